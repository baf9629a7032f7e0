"""`mathdistill search`: the typer command (mounted by distill.cli). Parses options into a
:class:`~distill.search.config.SearchConfig`, loads the problems (with distill.cli's own
``--data`` handling), runs the stage, prints the summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def search_command(
    data: str = typer.Option(..., "--data", help="Dataset name (see `mathdistill data list`), "
                             "or a jsonl/csv/parquet file."),
    split: str = typer.Option("train", "--split", "-s", help="Split to search."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: rationales/ (Parquet) "
                             "and summary.json."),
    limit: Optional[int] = typer.Option(None, "--limit", help="First N problems only."),
    max_ops: Optional[int] = typer.Option(None, "--max-ops", help="Largest operator count K "
                                          "(default from the config: 3)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="first | minimal | top (default top)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file with a SearchConfig "
                                          "(options given here override it)."),
    reuse: Optional[bool] = typer.Option(None, "--reuse/--no-reuse",
                                         help="Allow a quantity twice in an expression."),
    prior: Optional[bool] = typer.Option(None, "--prior/--no-prior",
                                         help="Rank with the dataset's template prior."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Search workers (default: "
                                          "every CPU)."),
    against_gold: bool = typer.Option(False, "--against-gold", help="Report coverage and how "
                                      "often the top match is equivalent to the gold equation."),
    local: bool = typer.Option(False, "--local", help="Run in this process, without Ray."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder of dataset files "
                                            "(default: $MATHDISTILL_DATA_DIR, then ./data)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Weak supervision by equation search: expressions over each problem's quantities that
    give its answer, ranked; writes Rationale rows (strategy=search)."""
    # imported here: distill.cli mounts this command (the same option handling as `data`)
    from distill.cli import _fail, _load, _source
    from distill.config import ConfigError, load_config
    from distill.search.config import SEARCH_MODES, SearchConfig

    if mode is not None and mode not in SEARCH_MODES:
        _fail(f"--mode must be one of {', '.join(SEARCH_MODES)} (got {mode!r})")
    try:
        cfg = load_config(config, SearchConfig) if config else SearchConfig()
        updates = {k: v for k, v in {"max_ops": max_ops, "mode": mode, "allow_reuse": reuse,
                                     "prior": prior}.items() if v is not None}
        cfg = SearchConfig.model_validate({**cfg.model_dump(), **updates})
    except (ConfigError, ValueError) as e:
        _fail(str(e))
    source = _source(data, split, limit, None)
    loaded = _load(source, data_dir)
    rows = loaded.problems
    if local:
        summary = _run_local(rows, cfg, out, against_gold)
    else:
        import ray

        from distill.config import RayConfig, StageResources
        from distill.search.stage import search_dataset

        if not ray.is_initialized():
            ray.init(**RayConfig().init_kwargs(), log_to_driver=False)
        summary = search_dataset(rows, cfg, out, against_gold=against_gold,
                                 resources=StageResources(concurrency=workers))
    summary = {"dataset": source.label, **summary}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
        return
    for key in ("dataset", "problems", "solved", "coverage", "mean_matches", "problems_per_s",
                "budget_hits", "top_gold_equivalent"):
        if key in summary:
            typer.echo(f"{key:>20}: {summary[key]}")
    typer.echo(f"{'rationales':>20}: {out / 'rationales'}")


def _run_local(rows, cfg, out: Path, against_gold: bool) -> dict:
    import pyarrow.parquet as pq

    from distill.records import RATIONALE_SCHEMA, to_table
    from distill.search.problems import run_search

    run = run_search(rows, cfg, against_gold=against_gold)
    target = out / "rationales"
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.parquet"):
        old.unlink()
    pq.write_table(to_table(run.rows, RATIONALE_SCHEMA), target / "part-000.parquet")
    return {**run.summary, "mode": cfg.mode, "max_ops": cfg.max_ops}
