"""`mathdistill search`: the typer command (mounted by distill.cli). Builds the
:class:`~distill.search.config.SearchConfig` (``--config``: a pipeline config's ``search``
section, options given here overriding it) and the Ray side (its ``ray`` section, or
``--ray``), loads the problems, runs the stage, prints the summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from distill.cli_common import CONFIG_HELP, RAY_HELP, Origin, RevisionOpt, SourceOpt, field_help
from distill.resources import StageResources
from distill.search.config import SearchConfig


def search_command(
    data: str = typer.Option(..., "--data", help="Dataset name (see `mathdistill data list`), "
                             "or a jsonl/csv/parquet file."),
    split: str = typer.Option("train", "--split", "-s", help="Split to search."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: rationales/ (Parquet) "
                             "and summary.json."),
    limit: Optional[int] = typer.Option(None, "--limit", help="First N problems only."),
    origin: Origin = SourceOpt,
    revision: Optional[str] = RevisionOpt,
    max_ops: Optional[int] = typer.Option(None, "--max-ops",
                                          help=field_help(SearchConfig, "max_ops")),
    mode: Optional[str] = typer.Option(None, "--mode", help=field_help(SearchConfig, "mode")),
    config: Optional[Path] = typer.Option(None, "--config",
                                          help=CONFIG_HELP.format(section="search")),
    ray_config: Optional[Path] = typer.Option(None, "--ray", help=RAY_HELP),
    reuse: Optional[bool] = typer.Option(None, "--reuse/--no-reuse",
                                         help=field_help(SearchConfig, "allow_reuse")),
    prior: Optional[bool] = typer.Option(None, "--prior/--no-prior",
                                         help=field_help(SearchConfig, "prior")),
    workers: Optional[int] = typer.Option(
        None, "--workers", help=field_help(StageResources, "concurrency",
                                           "ray.resources.search.")),
    against_gold: bool = typer.Option(False, "--against-gold", help="Report coverage and how "
                                      "often the top match is equivalent to the gold equation."),
    local: bool = typer.Option(False, "--local", help="Run in this process, without Ray."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder of dataset files "
                                            "(default: $MATHDISTILL_DATA_DIR, then ./data)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Weak supervision by equation search: expressions over each problem's quantities that
    give its answer, ranked; writes Rationale rows (strategy=search)."""
    from distill.cli_common import fail, init_ray, load_problems, load_stage_configs, source
    from distill.search.config import SEARCH_MODES

    if mode is not None and mode not in SEARCH_MODES:
        fail(f"--mode must be one of {', '.join(SEARCH_MODES)} (got {mode!r})")
    configs = load_stage_configs(config, ray_config, "search", SearchConfig, options={
        "max_ops": max_ops, "mode": mode, "allow_reuse": reuse, "prior": prior})
    cfg = configs.stage
    resources = configs.resources("search")
    if workers is not None:
        resources = resources.model_copy(update={"concurrency": workers})
    src = source(data, split, limit, None, origin, revision)
    rows = load_problems(src, data_dir).problems
    if local:
        summary = _run_local(rows, cfg, out, against_gold)
    else:
        from distill.search.stage import search_dataset

        init_ray(configs.ray)
        summary = search_dataset(rows, cfg, out, against_gold=against_gold, resources=resources)
    summary = {"dataset": src.label, **summary}
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
