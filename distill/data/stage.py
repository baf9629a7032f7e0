"""The data stage: load the configured train and eval sources, decontaminate, write Parquet.

Pure core: :func:`prepare_data` (DataConfig -> :class:`DataStageResult`, no Ray). Thin wrapper:
:func:`write_data_stage` writes the rows through Ray Data when Ray is initialised (so the same
code writes to local disk, ``s3://`` or ``gs://``), else through pyarrow.

Output layout under ``out_dir``::

    train/            Problem rows to train on (after decontamination), Parquet
    eval/<name>_<split>/   Problem rows of each evaluation source, Parquet
    rejects.jsonl     records set aside while loading, with their reasons
    decontaminated.jsonl   training rows removed because an eval problem has the same text
    summary.json      counts (per source, rejects, removed per dataset pair)

Contract: :data:`NEEDS` (none: the stage reads source files, not another stage's rows) and
:data:`WRITES` (:data:`distill.records.PROBLEM_SCHEMA`, the rows every later stage reads).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from distill.data.config import DataConfig, DataSource
from distill.data.base import LoadResult, Reject, get_loader, resolve_data_dir, write_rejects
from distill.data.decontam import DecontaminationReport, decontaminate
from distill.records import PROBLEM_SCHEMA, to_table
from distill.storage import RemotePath, rmtree, run_location

NEEDS: tuple[str, ...] = ()  # the first stage: no input rows
WRITES = PROBLEM_SCHEMA  # train/ and eval/<set>/


@dataclass
class DataStageResult:
    train: list[dict[str, Any]] = field(default_factory=list)
    eval: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # label -> rows
    rejects: list[Reject] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    report: DecontaminationReport = field(default_factory=DecontaminationReport)
    loaded: dict[str, int] = field(default_factory=dict)  # source label -> rows loaded

    def summary(self) -> dict[str, Any]:
        return {
            "train_rows": len(self.train),
            "eval_rows": {label: len(rows) for label, rows in self.eval.items()},
            "loaded": self.loaded,
            "rejects": len(self.rejects),
            "decontamination": self.report.to_dict(),
        }


def load_source(source: DataSource, config: DataConfig) -> LoadResult:
    """One source's rows (first ``limit`` when set) and rejects."""
    data_dir = resolve_data_dir(config.data_dir)
    if source.source == "hub":
        from distill.data.hub import load_hub

        result = load_hub(source.name, source.split, source.revision)
    elif source.path is not None:
        from distill.data.loaders import load_file

        result = load_file(source.path, columns=source.columns, dataset=source.name, lang=source.lang)
    elif source.name == "synthetic":
        from distill.data.synthetic import generate

        result = LoadResult(problems=generate(config.synthetic, source.split))
    else:
        loader = get_loader(source.name)
        loader.check_split(source.split, data_dir)
        result = loader.load(source.split, data_dir)
    if source.limit is not None:
        result.problems = result.problems[: source.limit]
    return result


def input_files(config: DataConfig) -> list[tuple[str, Path]]:
    """The files the data stage reads for ``config``, as (name, path): a user's file by its
    path, a registered dataset's files relative to the data folder; synthetic sources read
    none (their rows follow from the config). A Hub source contributes its identity instead
    (repository, config, revision as given and the commit it resolves to, as the name of an
    empty file; :func:`distill.data.hub.hub_inputs`), so a changed revision re-runs the stage."""
    data_dir = resolve_data_dir(config.data_dir)
    files: dict[str, Path] = {}
    for source in [*config.train, *config.eval]:
        if source.source == "hub":
            from distill.data.hub import hub_inputs

            files.update(hub_inputs(source.name, source.revision))
        elif source.path is not None:
            files[f"file:{source.path}"] = Path(source.path)
        elif source.name != "synthetic":
            files.update(get_loader(source.name).source_files(data_dir))
    return sorted(files.items())


def prepare_data(config: DataConfig) -> DataStageResult:
    """Load every source; drop training rows that match an eval problem (when configured)."""
    out = DataStageResult()
    train: list[dict[str, Any]] = []
    for source in config.train:
        res = load_source(source, config)
        out.loaded[f"train:{source.label}"] = len(res.problems)
        out.rejects.extend(res.rejects)
        train.extend(res.problems)
    for source in config.eval:
        res = load_source(source, config)
        out.loaded[f"eval:{source.label}"] = len(res.problems)
        out.rejects.extend(res.rejects)
        out.eval[source.label] = res.problems
    if config.decontaminate and out.eval:
        eval_rows = [row for rows in out.eval.values() for row in rows]
        kept, removed, out.report = decontaminate(train, eval_rows)
        out.train, out.removed = list(kept), list(removed)
    else:
        out.train = train
        out.report = DecontaminationReport(train_rows=len(train), kept=len(train))
    return out


def write_problems(rows: list[dict[str, Any]], path: str | Path | RemotePath) -> None:
    """Write Problem rows as Parquet under ``path`` (a folder or an object-store URI,
    replaced), via Ray Data when Ray is up."""
    path = run_location(path)
    rmtree(path)
    table = to_table(rows, WRITES)
    try:
        import ray

        use_ray = ray.is_initialized()
    except ImportError:
        use_ray = False
    if use_ray:
        import ray.data

        ray.data.from_arrow(table).write_parquet(str(path))
    else:
        path.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, str(path / "part-000.parquet"))


def read_problems(path: str | Path | RemotePath) -> pa.Table:
    """Read back what :func:`write_problems` wrote (a Parquet folder)."""
    return pq.read_table(str(path), schema=WRITES)


def write_data_stage(result: DataStageResult, out_dir: str | Path | RemotePath) -> dict[str, Any]:
    """Write a DataStageResult in the layout of this module's docstring; returns the summary."""
    out_dir = run_location(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_problems(result.train, out_dir / "train")
    for label, rows in result.eval.items():
        write_problems(rows, out_dir / "eval" / label.replace(":", "_"))
    write_rejects(result.rejects, out_dir / "rejects.jsonl")
    with (out_dir / "decontaminated.jsonl").open("w", encoding="utf-8") as f:
        for row in result.removed:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    summary = result.summary()
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary
