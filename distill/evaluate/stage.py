"""The evaluation stage on Ray Data: a trained student, Problem rows of the evaluation sets ->
predictions, ``report.json`` / ``report.md`` / plots.

A thin wrapper over :mod:`distill.evaluate` (scoring and the report) and
:mod:`distill.evaluate.infer` (generation, answers). Generation runs in a Ray Data actor pool
(:class:`~distill.evaluate.infer.StudentPredictor`, the student loaded once per actor; workers,
CPUs, GPUs and memory per actor are the ``evaluate`` entry of the Ray resources, translated by
:mod:`distill.resources`). An actor that reserved a GPU decodes on it, in
``evaluate.inference.dtype`` (auto: bf16 where the GPU supports it); the others decode on the
CPU (:mod:`distill.devices`). Programs the student writes
(targets ``pot`` and ``kpdd``) run in the sandbox on the driver, in one batch.

Output layout under ``out_dir``::

    predictions.jsonl   one row per (problem, sample): set, id, gold, output, predicted, error
    report.json         distill.evaluate.summarize + {"student", "target", "sets"}
    report.md, plots/   the same for people

Contract: :data:`NEEDS` (the Problem columns of every evaluation set; checked on entry, before
any Ray work) and :data:`WRITES` (None: predictions and a report, no rows for another stage).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from distill.evaluate.config import EvaluateConfig
from distill.evaluate.report import score_problems, summarize, write_report
from distill.records import require_columns
from distill.evaluate.infer import (
    TARGETS_EVALUATED,
    StudentPredictor,
    TargetScorer,
    prediction_rows,
    source_column,
)
from distill.resources import StageResources, resources_or_default
from distill.storage import run_location

if TYPE_CHECKING:
    from distill.sandbox import SandboxConfig

__all__ = ["NEEDS", "WRITES", "evaluate_student", "generate_on_ray", "predictions",
           "score_on_ray"]

# the Problem columns evaluate_student reads (``dataset`` it sets itself: the set's label;
# ``answer_raw`` is preferred as the gold when present)
NEEDS: tuple[str, ...] = ("id", "question", "masked_question", "quantities", "answer")
WRITES = None  # predictions.jsonl and the report; no rows another stage reads


def _in_order_on_actor_pool(udf: type, constructor_kwargs: Mapping[str, Any],
                            items: list[dict[str, Any]], batch_size: int,
                            resources: StageResources | None, column: str) -> list[Any]:
    """``column`` of each of ``items`` once ``udf`` (a Ray Data UDF class holding a student)
    ran over them in an actor pool sized by ``resources`` (at most one actor per batch), in
    item order."""
    import ray.data

    res = resources_or_default(resources)
    workers = res.pool_size(cap=math.ceil(len(items) / batch_size))
    rows = [{"_order": i, **item} for i, item in enumerate(items)]
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 4 * workers)))
    out = ds.map_batches(udf, fn_constructor_kwargs=dict(constructor_kwargs),
                         batch_size=batch_size, batch_format="pandas",
                         **res.map_batches_args(workers))
    results: list[Any] = [None] * len(items)
    for row in out.iter_rows():
        results[int(row["_order"])] = row[column]
    return results


def generate_on_ray(student_dir: str, rows: list[dict[str, Any]], target: str,
                    config: EvaluateConfig, resources: StageResources | None) -> list[list[str]]:
    """Outputs per row (``config.inference.num_samples`` each), in row order, from an actor
    pool decoding ``student_dir`` (equation students under their grammar)."""
    column = source_column(target)
    outputs = _in_order_on_actor_pool(
        StudentPredictor,
        {"student_dir": student_dir, "config": config.inference.model_dump(mode="json"),
         "source_column": column, "kpdd": target == "kpdd", "target": target},
        [{column: r[column], "quantities": list(r["quantities"])} for r in rows],
        config.batch_size, resources, "outputs")
    return [[str(t) for t in texts or ()] for texts in outputs]


def score_on_ray(student_dir: str, pairs: Sequence[tuple[str, str]], config: EvaluateConfig,
                 max_target_length: int, resources: StageResources | None) -> list[float]:
    """The student's negative log-likelihood of each ``(source, target)`` pair
    (:func:`~distill.evaluate.infer.score_targets`; ``inf``: it cannot write the target), in
    order, from an actor pool like :func:`generate_on_ray`'s."""
    if not pairs:
        return []
    scores = _in_order_on_actor_pool(
        TargetScorer,
        {"student_dir": student_dir, "config": config.inference.model_dump(mode="json"),
         "max_target_length": max_target_length},
        [{"source": s, "target": t} for s, t in pairs],
        config.inference.batch_size, resources, "nll")
    return [math.inf if x is None else float(x) for x in scores]


def predictions(rows: Sequence[Mapping[str, Any]], outputs: Sequence[Sequence[str]], target: str,
                sandbox: SandboxConfig | None = None) -> list[dict[str, Any]]:
    """:func:`~distill.evaluate.infer.prediction_rows` of the student's ``outputs`` for
    ``rows``, the programs of ``pot`` / ``kpdd`` students run in a sandbox pool (``sandbox``'s
    limits; opened and closed here, on the driver, all in one batch)."""
    if target not in ("pot", "kpdd"):
        return prediction_rows(rows, outputs, target)
    from distill.sandbox import SandboxPool

    pool = SandboxPool(sandbox)
    try:
        return prediction_rows(rows, outputs, target, pool.run_many)
    finally:
        pool.close()


def evaluate_student(
    student_dir: str | Path,
    sets: Mapping[str, Sequence[Mapping[str, Any]]],
    target: str,
    config: EvaluateConfig,
    out_dir: str | Path,
    *,
    resources: StageResources | None = None,
    sandbox: SandboxConfig | None = None,
) -> dict[str, Any]:
    """Evaluate the student in ``student_dir`` on ``sets`` (label -> Problem rows); write the
    layout of the module docstring under ``out_dir`` and return the report. Ray must be
    initialised by the caller. The report's ``per_dataset`` is keyed by set label. Raises
    ValueError naming the :data:`NEEDS` columns a set lacks, before any Ray work."""
    if target not in TARGETS_EVALUATED:
        raise ValueError(f"evaluation of target {target!r} is not supported; supported: "
                         f"{', '.join(TARGETS_EVALUATED)}")
    chosen = list(sets) if config.sets is None else list(config.sets)
    unknown = [s for s in chosen if s not in sets]
    if unknown:
        raise ValueError(f"evaluate.sets: unknown set(s) {unknown}; the run has {sorted(sets)}")
    rows: list[dict[str, Any]] = []
    for label in chosen:
        given = list(sets[label])
        if given:
            require_columns(given[0].keys(), NEEDS, f"evaluate set {label}")
        part = [dict(r, dataset=label) for r in given]
        rows.extend(part[: config.limit] if config.limit else part)
    if not rows:
        raise ValueError("evaluate: no problems in the chosen sets")
    t0 = time.perf_counter()
    outputs = generate_on_ray(str(student_dir), rows, target, config, resources)
    gen_s = time.perf_counter() - t0
    preds = predictions(rows, outputs, target, sandbox)
    report = summarize(score_problems(preds), config.inference.num_beams)
    report.update({"student": str(student_dir), "target": target, "sets": chosen,
                   "generation_s": round(gen_s, 3),
                   "problems_per_s": round(len(rows) / gen_s, 2) if gen_s > 0 else None})
    out = run_location(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "predictions.jsonl").open("w", encoding="utf-8") as f:
        for p in preds:
            f.write(json.dumps(p, ensure_ascii=False, default=str) + "\n")
    previous = None
    if config.compare_with:
        previous = json.loads(run_location(config.compare_with).read_text(encoding="utf-8"))
    write_report(report, out, previous)
    return report
