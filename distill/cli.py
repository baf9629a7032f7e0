"""`mathdistill`: one sub-command per stage, and `run` for a whole config.

The CLI only parses options and calls the library; every option maps onto a config field or a
library argument defined once. This module mounts the commands; what they share (errors,
``--data`` handling, ``--config`` / ``--ray``) is in :mod:`distill.cli_common`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from distill.cli_common import (FILE_SUFFIXES, Origin, RevisionOpt, SourceOpt, fail,
                                load_problems, source)
from distill.config import ConfigError, load_config
from distill.equations import DEFAULT_CONSTANTS
from distill.data.base import DataError, resolve_data_dir
from distill.evaluate.cli import evaluate_command
from distill.generate.cli import generate_command
from distill.sandbox.cli import sandbox_app
from distill.search.cli import search_command
from serve.cli import serve_check_command, serve_command

app = typer.Typer(
    help="Distill the math reasoning of large teacher LLMs into small students, on Ray.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Datasets: list, fetch, show, stats, export.", no_args_is_help=True)
config_app = typer.Typer(help="Pipeline configs: validate, show.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(config_app, name="config")
app.add_typer(sandbox_app, name="sandbox")
app.command("search")(search_command)
app.command("generate")(generate_command)
app.command("evaluate")(evaluate_command)
app.command("serve")(serve_command)
app.command("serve-check")(serve_check_command)

DataDirOpt = typer.Option(
    None, "--data-dir", help="Folder of dataset files (default: $MATHDISTILL_DATA_DIR, then ./data)."
)
ColumnsOpt = typer.Option(
    None,
    "--columns",
    help="For a file NAME (jsonl/csv/parquet): field=column pairs, e.g. question=q,answer=a.",
)


@data_app.command("list")
def data_list(data_dir: Optional[Path] = DataDirOpt) -> None:
    """List registered datasets, where their files go, which splits are present, where they
    are published (`data fetch NAME` gets them) and their Hub copy, if any."""
    from distill.data import dataset_names, get_loader
    from distill.data.fetch import upstream_files

    root = resolve_data_dir(data_dir)
    published: dict[str, list[str]] = {}
    for f in upstream_files():
        for d in f.datasets:
            where = f"{f.repository}@{f.commit[:7]}"
            if where not in published.setdefault(d, []):
                published[d].append(where)
    typer.echo(f"data dir: {root}")
    for name in dataset_names():
        loader = get_loader(name)
        present = loader.splits(root)
        typer.echo(f"{name:12s} {loader.description}")
        typer.echo(f"{'':12s}   files: {loader.layout or '(generated, no files)'}")
        typer.echo(f"{'':12s}   splits present: {', '.join(present) if present else '(none)'}")
        if name in published:
            typer.echo(f"{'':12s}   published: {', '.join(published[name])} "
                       f"(mathdistill data fetch {name})")
        if loader.hub is not None:
            typer.echo(f"{'':12s}   hub: {loader.hub.describe()}")


@data_app.command("show")
def data_show(
    name: str = typer.Argument(..., help="Dataset name, or a jsonl/csv/parquet file."),
    split: str = typer.Option("all", "--split", "-s", help="Split to show."),
    limit: int = typer.Option(3, "--limit", "-n", help="How many problems to show."),
    data_dir: Optional[Path] = DataDirOpt,
    columns: Optional[str] = ColumnsOpt,
    as_json: bool = typer.Option(False, "--json", help="Print rows as JSON lines."),
    origin: Origin = SourceOpt,
    revision: Optional[str] = RevisionOpt,
) -> None:
    """Show the first problems of a split as Problem rows."""
    result = load_problems(source(name, split, limit, columns, origin, revision), data_dir)
    for row in result.problems:
        if as_json:
            typer.echo(json.dumps(row, ensure_ascii=False))
        else:
            typer.echo(f"--- {row['id']}  [{row['lang']}]")
            for key in ("question", "masked_question", "quantities", "answer", "answer_raw", "equation"):
                typer.echo(f"{key:>16}: {row[key]}")
    if result.rejects:
        typer.echo(f"({len(result.rejects)} record(s) rejected; see `data export`)", err=True)


@data_app.command("stats")
def data_stats(
    name: str = typer.Argument(..., help="Dataset name."),
    split: Optional[List[str]] = typer.Option(None, "--split", "-s", help="Splits (default: all present)."),
    data_dir: Optional[Path] = DataDirOpt,
    constants: str = typer.Option(
        ",".join(DEFAULT_CONSTANTS), "--constants", help="Allowed constants, comma-separated."
    ),
    misses: int = typer.Option(10, "--misses", help="How many misses of each check to print."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    origin: Origin = SourceOpt,
    revision: Optional[str] = RevisionOpt,
) -> None:
    """Split sizes, rejects, gold-equation agreement and quantity coverage."""
    from distill.data.stats import dataset_stats

    if revision is not None and origin != "hub":
        fail("--revision applies to --source hub only")
    try:
        stats = dataset_stats(name, resolve_data_dir(data_dir), constants.split(","), split,
                              source=origin, revision=revision)
    except (DataError, ValueError) as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps(stats, ensure_ascii=False))
        return
    typer.echo(f"dataset: {stats['dataset']}"
               + (f" (hub, revision {revision or 'default'})" if origin == "hub" else ""))
    for s, n in stats["splits"].items():
        typer.echo(f"  {s:8s} {n:7d} problems, {stats['rejects_by_split'][s]} rejected")
    n = stats["problems_with_equation"]
    typer.echo(f"gold equations checked on {'+'.join(stats['gold_checked_on'])}: {n}")
    if n:
        typer.echo(f"  gold_equation_agreement {stats['gold_equation_agreement']:.4f}")
        typer.echo(f"  quantity_coverage       {stats['quantity_coverage']:.4f}")
        for d in stats["disagreements"][:misses]:
            typer.echo(f"  disagrees: {d['id']}: {d['equation']}  answer {d['answer']}  ({d['why']})")
        for u in stats["uncovered"][:misses]:
            typer.echo(f"  uncovered: {u['id']}: {u['equation']}  missing {u['missing']}")


@data_app.command("export")
def data_export(
    name: str = typer.Argument(..., help="Dataset name, or a jsonl/csv/parquet file."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    split: Optional[List[str]] = typer.Option(None, "--split", "-s", help="Splits (default: all present)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="First N problems of each split."),
    data_dir: Optional[Path] = DataDirOpt,
    columns: Optional[str] = ColumnsOpt,
    decontaminate_against: Optional[List[str]] = typer.Option(
        None,
        "--decontaminate-against",
        help="NAME:SPLIT of an evaluation set; problems whose normalized text matches one of its "
        "problems are left out (written to decontaminated.jsonl). Repeatable.",
    ),
    origin: Origin = SourceOpt,
    revision: Optional[str] = RevisionOpt,
) -> None:
    """Write splits as Parquet folders (out/<split>/), with rejects.jsonl and summary.json."""
    from distill.data import get_loader
    from distill.data.base import write_rejects
    from distill.data.decontam import decontaminate
    from distill.data.stage import write_problems

    root = resolve_data_dir(data_dir)
    if name.endswith(FILE_SUFFIXES) or Path(name).is_file():
        splits = ["all"]
    else:
        try:
            if split:
                splits = list(split)
            elif origin == "hub":
                from distill.data.hub import hub_source

                splits = list(hub_source(name).splits)
            else:
                splits = get_loader(name).splits(root)
        except DataError as e:
            fail(str(e))
    eval_rows: list[dict[str, Any]] = []
    for spec in decontaminate_against or []:
        ev_name, _, ev_split = spec.partition(":")
        eval_rows.extend(load_problems(source(ev_name, ev_split or "test", None, None), data_dir).problems)
    summary: dict[str, Any] = {"dataset": name, "splits": {}, "rejects": 0, "decontamination": {}}
    rejects, removed_all = [], []
    for s in splits:
        result = load_problems(source(name, s, limit, columns, origin, revision), data_dir)
        rows = result.problems
        if eval_rows:
            rows, removed, report = decontaminate(rows, eval_rows)
            removed_all.extend(removed)
            summary["decontamination"][s] = report.to_dict()
        write_problems(list(rows), out / s)
        rejects.extend(result.rejects)
        summary["splits"][s] = len(rows)
    summary["rejects"] = write_rejects(rejects, out / "rejects.jsonl")
    with (out / "decontaminated.jsonl").open("w", encoding="utf-8") as f:
        for row in removed_all:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    typer.echo(json.dumps(summary, ensure_ascii=False))


@data_app.command("fetch")
def data_fetch(
    names: List[str] = typer.Argument(..., help="Dataset names (see `mathdistill data list`)."),
    data_dir: Optional[Path] = DataDirOpt,
    force: bool = typer.Option(False, "--force", help="Replace a file whose checksum differs "
                               "from the recorded one (default: keep it and report it)."),
) -> None:
    """Download datasets from where they are published into the layout `data list` shows,
    each file checked against its recorded SHA-256 (an interrupted download resumes; nothing
    half-written is left in place). Exit 2 if any file could not be put in place."""
    from distill.data.fetch import fetch, licence_lines

    root = resolve_data_dir(data_dir)
    failed = 0
    for name in names:
        try:
            results = fetch(name, root)
        except DataError as e:
            fail(str(e))
        for r in results:
            typer.echo(f"{r.status:>12}  {root / r.file}  ({r.detail})", err=not r.ok)
            failed += not r.ok
        for line in licence_lines([name]):
            typer.echo(line)
    if failed:
        fail(f"{failed} file(s) not in place (see above)")


@config_app.command("validate")
def config_validate(files: List[Path] = typer.Argument(..., help="Pipeline config YAML files.")) -> None:
    """Load and validate configs; prints each file's problems, exit 2 if any."""
    bad = 0
    for f in files:
        try:
            load_config(f)
            typer.echo(f"ok: {f}")
        except ConfigError as e:
            bad += 1
            typer.echo(str(e), err=True)
    if bad:
        raise typer.Exit(2)


@config_app.command("show")
def config_show(file: Path = typer.Argument(..., help="Pipeline config YAML.")) -> None:
    """Print a config with every default filled in."""
    from distill.config import dump_config

    try:
        typer.echo(dump_config(load_config(file)), nl=False)
    except ConfigError as e:
        fail(str(e))


@app.command("report")
def report(
    run_dir: str = typer.Argument(..., help="A run directory (a folder or an s3:// / gs:// URI)."),
) -> None:
    """Print a run's report: its stages, its evaluation, a section per refinement round and
    the evaluations made afterwards (also written to RUN_DIR/report.md by `run`)."""
    from distill.runreport import run_report

    try:
        text, _ = run_report(run_dir)
    except FileNotFoundError as e:
        fail(str(e))
    typer.echo(text)


@app.command("run")
def run(
    config: Path = typer.Argument(..., help="Pipeline config YAML (see configs/)."),
    run_dir: Optional[str] = typer.Option(None, "--run-dir", help="A folder, a shared mount or "
                                          "an object-store URI (s3://bucket/prefix, gs://…); "
                                          "default: runs/<name>."),
    until: Optional[str] = typer.Option(None, "--until", help="Stop after this stage (data, "
                                        "search or generate, sft, train, evaluate, "
                                        "refine_1 … refine_R)."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON at the end."),
) -> None:
    """Run a whole pipeline config (data -> teacher -> SFT -> train -> evaluate); stages
    complete for the same config are skipped, an interrupted run continues where it stopped."""
    from distill.pipeline import run_pipeline, user_errors

    try:
        cfg = load_config(config)
    except ConfigError as e:
        fail(str(e))
    try:
        manifest = run_pipeline(cfg, run_dir, log=lambda m: typer.echo(m, err=as_json),
                                until=until)
    except user_errors() as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps(manifest, ensure_ascii=False))
    else:
        for name, stage in manifest["stages"].items():
            typer.echo(f"{name}: {stage['status']} {json.dumps(stage.get('counts', {}), ensure_ascii=False)}")
        typer.echo(f"run dir: {run_dir or cfg.resolved_run_dir()}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
