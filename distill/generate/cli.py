"""`mathdistill generate`: the typer command (mounted by distill.cli). Parses options into a
:class:`~distill.generate.config.GenerateConfig` (a ``--config`` YAML file, options given on the
command line overriding it), loads the problems, runs the stage, prints progress to stderr and
the summary at the end (with the generation errors by kind).

Exit status: 0 when the run made its rows (some may have failed: a re-run retries them); 1
when it stopped early (``stop_after_failures`` rows in a row failed the same way) or made no
completion at all; 2 when it could not start (bad options or config, an ``--out`` folder made
with another configuration or problem set, a teacher server that cannot be used)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer


def generate_command(
    data: str = typer.Option(..., "--data", help="Dataset name (see `mathdistill data list`), "
                             "or a jsonl/csv/parquet file of problems."),
    split: str = typer.Option("train", "--split", "-s", help="Split to generate for."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: rationales/ (Parquet "
                             "shards), stage.json, summary.json. A re-run resumes it."),
    limit: Optional[int] = typer.Option(None, "--limit", help="First N problems only."),
    strategy: Optional[str] = typer.Option(
        None, "--strategy", help="cot, pot, kpdd_cot, kpdd_pot, fltt_equation, "
        "fltt_masked_equation, fdd_harder, fdd_similar (default from the config: pot)."),
    engine: Optional[str] = typer.Option(None, "--engine", help="hf, openai or vllm "
                                         "(default from the config: openai)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name (server / hub) or "
                                        "local folder."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="openai engine: server URL "
                                           "up to /v1, e.g. http://127.0.0.1:8000/v1."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Samples per problem."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Sampling "
                                                "temperature (0: greedy)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Tokens per call at most."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file with a "
                                          "GenerateConfig (options given here override it)."),
    local: bool = typer.Option(False, "--local", help="Run in this process, without Ray "
                               "(hf and openai engines)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder of dataset files "
                                            "(default: $MATHDISTILL_DATA_DIR, then ./data)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Teacher generation: prompts a teacher with a strategy, verifies every rationale
    (answers, sandboxed programs, equation checks) and writes Rationale rows; killed and run
    again, it finishes without duplicates and without asking the teacher twice."""
    import yaml

    from distill.cli import _fail, _load, _source
    from distill.config import ConfigError, validate_config
    from distill.generate.config import GenerateConfig
    from distill.generate.engines import TeacherUnavailableError
    from distill.generate.stage import GenerationFailedError, StageMismatchError, generate_dataset

    base: dict[str, Any] = {}
    if config is not None:
        try:
            base = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            _fail(f"{config}: {e}")
        if not isinstance(base, dict):
            _fail(f"{config}: expected a mapping at the top level")
    merged = {**base, **{k: v for k, v in {"strategy": strategy, "engine": engine, "model": model,
                                             "samples": samples}.items() if v is not None}}
    sampling = dict(merged.get("sampling") or {})
    if temperature is not None:
        sampling["temperature"] = temperature
    if max_tokens is not None:
        sampling["max_tokens"] = max_tokens
    if sampling:
        merged["sampling"] = sampling
    if base_url is not None:
        merged["openai"] = {**(merged.get("openai") or {}), "base_url": base_url}
    if "model" not in merged:
        _fail("--model is required (or `model:` in the --config file)")
    try:
        cfg = validate_config(merged, GenerateConfig, str(config) if config else "options")
    except ConfigError as e:
        _fail(str(e))
    source = _source(data, split, limit, None)
    loaded = _load(source, data_dir)
    log = lambda m: typer.echo(m, err=True)  # noqa: E731
    resources = verify_resources = None
    if not local:
        import ray

        from distill.config import RayConfig

        ray_cfg = RayConfig()
        if not ray.is_initialized():
            ray.init(**ray_cfg.init_kwargs(), log_to_driver=False)
        resources, verify_resources = ray_cfg.for_stage("generate"), ray_cfg.for_stage("verify")
    label = source.label + (f", first {limit}" if limit is not None else "")
    failed: GenerationFailedError | None = None
    try:
        summary = generate_dataset(loaded.problems, cfg, out, resources=resources,
                                   verify_resources=verify_resources, progress=log, local=local,
                                   problems_label=label)
    except GenerationFailedError as e:
        failed, summary = e, e.summary
    except (StageMismatchError, TeacherUnavailableError, ValueError) as e:
        _fail(str(e))
    summary = {"dataset": source.label, **summary}
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
    else:
        for key in ("dataset", "strategy", "engine", "model", "rows", "correct", "wrong", "error",
                    "unparsable", "pass_rate", "generation_failed", "generated", "reused",
                    "tokens_in", "tokens_out", "rows_per_s"):
            typer.echo(f"{key:>18}: {summary[key]}")
        for kind, n in summary["generation_errors"].items():
            typer.echo(f"{'generation error':>18}: {n} x {kind}")
        typer.echo(f"{'rationales':>18}: {out / 'rationales'}")
    if failed is not None:
        typer.echo(f"error: {failed}", err=True)
        raise typer.Exit(1)


def main() -> None:  # `python -m distill.generate.cli --data ...` without the mounted CLI
    typer.run(generate_command)


if __name__ == "__main__":
    main()
