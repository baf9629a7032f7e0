"""`mathdistill generate`: the typer command (mounted by distill.cli). Parses options into a
:class:`~distill.generate.config.GenerateConfig` (``--config``: a pipeline config whose
``generate`` section it starts from, options given on the command line overriding it; its
``sandbox`` and ``ray`` sections are used too, ``--ray`` replacing the latter), loads the
problems, runs the stage, prints progress to stderr and the summary at the end (with the
generation errors by kind).

Exit status: 0 when the run made its rows (some may have failed: a re-run retries them); 1
when it stopped early (``stop_after_failures`` rows in a row failed the same way) or made no
completion at all; 2 when it could not start (bad options or config, an ``--out`` folder made
with another configuration or problem set, a teacher server that cannot be used)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from distill.cli_common import CONFIG_HELP, RAY_HELP, Origin, RevisionOpt, SourceOpt, field_help
from distill.generate.config import GenerateConfig, OpenAIEngineConfig, SamplingConfig


def generate_command(
    data: str = typer.Option(..., "--data", help="Dataset name (see `mathdistill data list`), "
                             "or a jsonl/csv/parquet file of problems."),
    split: str = typer.Option("train", "--split", "-s", help="Split to generate for."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: rationales/ (Parquet "
                             "shards), stage.json, summary.json. A re-run resumes it."),
    limit: Optional[int] = typer.Option(None, "--limit", help="First N problems only."),
    origin: Origin = SourceOpt,
    revision: Optional[str] = RevisionOpt,
    strategy: Optional[str] = typer.Option(None, "--strategy",
                                           help=field_help(GenerateConfig, "strategy")),
    engine: Optional[str] = typer.Option(None, "--engine",
                                         help=field_help(GenerateConfig, "engine")),
    model: Optional[str] = typer.Option(None, "--model",
                                        help=field_help(GenerateConfig, "model")),
    base_url: Optional[str] = typer.Option(
        None, "--base-url", help="openai engine: " + field_help(OpenAIEngineConfig, "base_url",
                                                               "openai.")),
    samples: Optional[int] = typer.Option(None, "--samples",
                                          help=field_help(GenerateConfig, "samples")),
    temperature: Optional[float] = typer.Option(
        None, "--temperature", help="Sampling temperature; "
        + field_help(SamplingConfig, "temperature", "sampling.")),
    max_tokens: Optional[int] = typer.Option(
        None, "--max-tokens", help=field_help(SamplingConfig, "max_tokens", "sampling.")),
    config: Optional[Path] = typer.Option(None, "--config",
                                          help=CONFIG_HELP.format(section="generate")),
    ray_config: Optional[Path] = typer.Option(None, "--ray", help=RAY_HELP),
    local: bool = typer.Option(False, "--local", help="Run in this process, without Ray "
                               "(hf and openai engines)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder of dataset files "
                                            "(default: $MATHDISTILL_DATA_DIR, then ./data)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Teacher generation: prompts a teacher with a strategy, verifies every rationale
    (answers, sandboxed programs, equation checks) and writes Rationale rows; killed and run
    again, it finishes without duplicates and without asking the teacher twice."""
    from distill.cli_common import fail, init_ray, load_problems, load_stage_configs, source
    from distill.generate.engines import TeacherUnavailableError
    from distill.generate.stage import GenerationFailedError, StageMismatchError, generate_dataset

    configs = load_stage_configs(
        config, ray_config, "generate", GenerateConfig,
        options={"strategy": strategy, "engine": engine, "model": model, "samples": samples,
                 "sampling": {k: v for k, v in {"temperature": temperature,
                                                "max_tokens": max_tokens}.items()
                              if v is not None},
                 "openai": {"base_url": base_url} if base_url is not None else None},
        required={"model": "--model is required (or `model:` in the --config file's generate "
                           "section)"})
    cfg = configs.stage
    src = source(data, split, limit, None, origin, revision)
    loaded = load_problems(src, data_dir)
    log = lambda m: typer.echo(m, err=True)  # noqa: E731
    resources = verify_resources = None
    if not local:
        init_ray(configs.ray)
        resources, verify_resources = configs.resources("generate"), configs.resources("verify")
    label = src.label + (f", first {limit}" if limit is not None else "")
    failed: GenerationFailedError | None = None
    try:
        summary = generate_dataset(loaded.problems, cfg, out, resources=resources,
                                   verify_resources=verify_resources, sandbox=configs.sandbox,
                                   progress=log, local=local, problems_label=label)
    except GenerationFailedError as e:
        failed, summary = e, e.summary
    except (StageMismatchError, TeacherUnavailableError, ValueError) as e:
        fail(str(e))
    summary = {"dataset": src.label, **summary}
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
