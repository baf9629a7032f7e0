"""The search stage on Ray Data: Problem rows in, Rationale rows (Parquet) and a summary out.

A thin wrapper over :mod:`distill.search.problems`. Two maps over the problems:

1. :class:`SearchUDF` searches each problem (actors, one per worker, each building its config
   once) and emits the result (pickled, internal to the stage) plus its share of the template
   prior;
2. the driver sums the shares into the :class:`~distill.search.rank.TemplatePrior` (skipped in
   mode ``first`` or without ``prior``); :class:`RankUDF` ranks each problem with it and renders
   the Rationale rows (and, with ``against_gold``, checks the top match against the gold).

Batches are at most ``config.batch_size`` problems (256: a tenth of a second to a second of
search, so Ray's per-batch cost stays small) and at least four per worker, one block each
(:func:`plan_batches`), so every core stays busy; the actor pools have a fixed size (every
worker starts at once); Ray Data shows its own progress bar. Output layout under
``out_dir``: ``rationales/`` (Parquet, :data:`distill.records.RATIONALE_SCHEMA`) and
``summary.json``.

Contract: :data:`NEEDS` (the Problem columns the search reads; checked on entry, before any
Ray work) and :data:`WRITES` (the schema of the rows it writes).
"""

from __future__ import annotations

import json
import math
import pickle
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from distill.metrics import record
from distill.records import RATIONALE_SCHEMA, require_columns, to_table
from distill.resources import StageResources, resources_or_default
from distill.search.config import SearchConfig
from distill.search.problems import (
    REQUIRED_COLUMNS,
    ProblemResult,
    gold_check,
    gold_summary,
    prior_of,
    rank_result,
    rationale_rows,
    search_problem,
)
from distill.search.rank import TemplatePrior
from distill.storage import rmtree, run_location

__all__ = ["NEEDS", "WRITES", "SearchUDF", "RankUDF", "plan_batches", "search_dataset"]

NEEDS: tuple[str, ...] = REQUIRED_COLUMNS  # Problem columns search_dataset needs
WRITES = RATIONALE_SCHEMA  # the rows it writes under rationales/


class SearchUDF:
    """Pass 1: search a batch of Problem rows (pyarrow in, pyarrow out)."""

    def __init__(self, config: Mapping[str, Any]):
        self.config = SearchConfig.model_validate(dict(config))

    def __call__(self, batch):
        import pyarrow as pa

        # search_dataset checked NEEDS on entry
        keep = [c for c in (*NEEDS, "question", "equation") if c in batch.column_names]
        rows = batch.select(keep).to_pylist()  # not the columns the search never reads
        out: dict[str, list] = {k: [] for k in (
            "id", "result", "solved", "n_matches", "budget_hit", "error", "time_ms",
            "template_keys", "template_shares", "shape_keys", "shape_shares")}
        learn = self.config.prior and self.config.mode != "first"
        empty = TemplatePrior()
        for row in rows:
            res = search_problem(row, self.config)
            share = prior_of(res, self.config) if learn else empty
            out["id"].append(res.id)
            out["result"].append(pickle.dumps(res, protocol=pickle.HIGHEST_PROTOCOL))
            out["solved"].append(res.solved)
            out["n_matches"].append(len(res.matches))
            out["budget_hit"].append(res.stats.budget_hit)
            out["error"].append(res.error)
            out["time_ms"].append(res.stats.time_ms)
            out["template_keys"].append(list(share.templates))
            out["template_shares"].append(list(share.templates.values()))
            out["shape_keys"].append(list(share.shapes))
            out["shape_shares"].append(list(share.shapes.values()))
        found = sum(out["solved"])
        record("search_problems", found, found="true")
        record("search_problems", len(rows) - found, found="false")
        record("search_budget_hits", sum(1 for b in out["budget_hit"] if b))
        return pa.table({
            "id": pa.array(out["id"], pa.string()),
            "result": pa.array(out["result"], pa.binary()),
            "solved": pa.array(out["solved"], pa.bool_()),
            "n_matches": pa.array(out["n_matches"], pa.int64()),
            "budget_hit": pa.array(out["budget_hit"], pa.string()),
            "error": pa.array(out["error"], pa.string()),
            "time_ms": pa.array(out["time_ms"], pa.float64()),
            "template_keys": pa.array(out["template_keys"], pa.list_(pa.int64())),
            "template_shares": pa.array(out["template_shares"], pa.list_(pa.float64())),
            "shape_keys": pa.array(out["shape_keys"], pa.list_(pa.int64())),
            "shape_shares": pa.array(out["shape_shares"], pa.list_(pa.float64())),
        })


class RankUDF:
    """Pass 2: rank each searched problem with the prior and render its Rationale rows."""

    def __init__(self, config: Mapping[str, Any], prior: TemplatePrior | None, against_gold: bool = False):
        self.config = SearchConfig.model_validate(dict(config))
        self.prior = prior
        self.against_gold = against_gold

    def __call__(self, batch):
        rows = []
        for blob in batch.column("result").to_pylist():
            res: ProblemResult = pickle.loads(blob)
            ranked = rank_result(res, self.config, self.prior)
            extra = {}
            if self.against_gold:
                extra = gold_check(res, ranked[0] if ranked else None)
            rows.extend(rationale_rows(res, ranked, self.config, extra))
        return to_table(rows, WRITES)


def _blocks(ds, columns: Sequence[str]):
    """The columns of a materialized dataset as pyarrow tables, block by block (no new job)."""
    import ray

    for ref in ds.to_arrow_refs():
        yield ray.get(ref).select(list(columns))


def _prior_from(ds) -> TemplatePrior:
    import numpy as np

    prior = TemplatePrior()
    for batch in _blocks(ds, ["template_keys", "template_shares", "shape_keys", "shape_shares", "solved"]):
        prior.problems += int(np.count_nonzero(batch.column("solved").to_numpy(zero_copy_only=False)))
        for kcol, scol, target in (("template_keys", "template_shares", prior.templates),
                                   ("shape_keys", "shape_shares", prior.shapes)):
            keys = batch.column(kcol).combine_chunks().flatten().to_numpy(zero_copy_only=False)
            shares = batch.column(scol).combine_chunks().flatten().to_numpy(zero_copy_only=False)
            if not len(keys):
                continue
            uniq, inv = np.unique(keys, return_inverse=True)
            sums = np.bincount(inv, weights=shares)
            for k, v in zip(uniq.tolist(), sums.tolist()):
                target[k] = target.get(k, 0.0) + v
    return prior


def plan_batches(n: int, batch_size: int, workers: int) -> tuple[int, int]:
    """(batch size, blocks) for ``n`` problems: at most ``batch_size`` a batch, at least four
    batches a worker, one block a batch (Ray Data would bundle smaller blocks into one task)."""
    size = max(1, min(batch_size, math.ceil(n / (4 * workers)) if n else 1))
    return size, max(1, math.ceil(n / size))


def search_dataset(
    rows: Sequence[Mapping[str, Any]],
    config: SearchConfig,
    out_dir: str | Path | None = None,
    against_gold: bool = False,
    resources: StageResources | None = None,
) -> dict[str, Any]:
    """Run both passes on Ray (initialised by the caller) over Problem rows; write
    ``rationales/`` and ``summary.json`` under ``out_dir`` when given; return the summary
    (``problems_per_s`` counts both passes, not Ray start-up or loading).

    ``resources`` (:class:`distill.resources.StageResources`, the pipeline's
    ``ray.resources.search``): what each worker reserves (CPUs, GPUs, memory) and the number
    of workers (``concurrency``; default: as many as the cluster's CPUs allow).
    Raises ValueError naming the :data:`NEEDS` columns the rows lack, before any Ray work."""
    rows = list(rows)
    if rows:
        require_columns(rows[0].keys(), NEEDS, "search")
    import ray
    import ray.data

    res = resources_or_default(resources)
    workers = res.pool_size()
    batch_size, blocks = plan_batches(len(rows), config.batch_size, workers)
    cfg = config.model_dump(mode="json")
    t0 = time.perf_counter()
    ds = ray.data.from_items(list(rows), override_num_blocks=blocks)
    searched = ds.map_batches(
        SearchUDF,
        fn_constructor_kwargs={"config": cfg},
        batch_size=batch_size,
        batch_format="pyarrow",
        **res.map_batches_args(workers),
    ).materialize()
    prior = None
    if config.prior and config.mode != "first":
        prior = _prior_from(searched)
    ranked = searched.map_batches(
        RankUDF,
        fn_constructor_kwargs={"config": cfg, "prior": prior, "against_gold": against_gold},
        batch_size=batch_size,
        batch_format="pyarrow",
        **res.map_batches_args(workers),
    ).materialize()
    elapsed = time.perf_counter() - t0
    import pyarrow as pa

    stats = pa.concat_tables(list(_blocks(searched, ["solved", "n_matches", "budget_hit", "error"])))
    solved = stats.column("solved").to_pylist()
    n_matches = stats.column("n_matches").to_pylist()
    n = len(solved)
    n_solved = sum(solved)
    summary: dict[str, Any] = {
        "problems": n,
        "solved": n_solved,
        "coverage": round(n_solved / n, 6) if n else 0.0,
        "mean_matches": (round(sum(m for m, s in zip(n_matches, solved) if s) / n_solved, 4)
                         if n_solved else 0.0),
        "problems_per_s": round(n / elapsed, 2) if elapsed > 0 else None,
        "budget_hits": sum(1 for b in stats.column("budget_hit").to_pylist() if b),
        "errors": sum(1 for e, s in zip(stats.column("error").to_pylist(), solved) if e and not s),
        "elapsed_s": round(elapsed, 3),
        "workers": workers,
        "mode": config.mode,
        "max_ops": config.max_ops,
        "prior_templates": len(prior.templates) if prior else 0,
    }
    record("search_coverage", summary["coverage"])
    if against_gold:
        summary.update(_gold_summary(ranked))
    if out_dir is not None:
        out = run_location(out_dir)
        target = out / "rationales"
        rmtree(target)
        out.mkdir(parents=True, exist_ok=True)
        ranked.write_parquet(str(target))
        (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary


def _gold_summary(ranked) -> dict[str, Any]:
    import pyarrow as pa

    t = pa.concat_tables(list(_blocks(ranked, ["meta", "sample_idx"])))
    checks = [json.loads(m) for m, i in zip(t.column("meta").to_pylist(),
                                            t.column("sample_idx").to_pylist()) if i == 0]
    return gold_summary(checks)
