"""Benchmark: the weak-supervision equation search against the plain enumerator.

One run, the same problems -- Math23K train (a fixed random sample of 2,000, seed 0) and all of
MAWPS -- for our search (distill.search) and ../shared/bench/naive_equation_search.py (imported;
its own number extraction, answer parsing and search, timed the way its main() times them):

* **speed**: problems/s at K <= 3 and K <= 4 for stop rule ``first`` and ``minimal`` (every
  match of the smallest operator count), one process on one core, and ours / baseline. The
  machine is shared and its load changes over minutes, so runs of ours and of the baseline are
  interleaved and the fastest of each counts: ``--repeat`` runs of ours, ``--repeat-baseline``
  of the baseline's ``first`` (its ``minimal``, minutes long, runs once). Our figure counts :func:`distill.search.search_problem` on Problem rows (reading the
  row's numbers and the search, with the default config: reuse fallback on, no ranking -- the
  baseline does not rank); the quantities come from the loader, so ``ratio_with_extraction``
  adds the measured cost of extracting them and reading the answer (distill.quantities), which
  the baseline's own figure includes.
* **coverage** (problems with a match): ours, ours without the reuse fallback, the baseline.
* **gold equivalence** at K <= 3 (share of ALL problems): our first match, our minimal set, the
  baseline's first match and minimal set (with its own gold mapping), our top-ranked match.
* **top-ranked quality** (mode ``top``, K <= 3, the whole stage in process: both passes,
  template prior, ranking, Rationale rows, gold check) on all of MAWPS and ALL of Math23K train:
  the default, quantity reuse on, the reuse fallback off, no prior; by gold operator count.
* **scaling** of our search from one to two Ray workers: the stage's search UDF in an actor
  pool of 1 and of 2 (2-CPU local Ray), timed from the first batch started to the last
  finished (Ray and actor start-up excluded), 1 and 2 alternated, the fastest of each; ``top`` on the
  Math23K sample, ``minimal`` and ``first`` on all of Math23K train.

    MATHDISTILL_DATA_DIR=../shared/data .venv/bin/python bench/search.py [--quick]
        [--parts speed,quality,scaling] [--skip-baseline]

Lines are printed as figures come; the last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO.parent / "shared" / "bench" / "naive_equation_search.py"


def _load_baseline():
    spec = importlib.util.spec_from_file_location("naive_equation_search", BASELINE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_sets(data_dir: Path, quick: bool) -> dict[str, list[dict]]:
    from distill.data import get_loader

    m23 = get_loader("math23k").load("train", data_dir).problems
    sample = random.Random(0).sample(m23, 2000)
    mawps = get_loader("mawps").load("all", data_dir).problems
    if quick:
        sample, mawps, m23 = sample[:300], mawps[:300], m23[:1000]
    return {"math23k_train_2000": sample, "mawps_all": mawps, "math23k_train_all": m23}


def _r(x: float, n: int = 4) -> float:
    return round(x, n)


# ------------------------------------------------------------------------------ ours
def run_ours(rows: list[dict], mode: str, max_ops: int, **kw) -> tuple[dict, list]:
    """One timed pass of our search over ``rows`` (the default config but for ``kw``)."""
    from distill.search import SearchConfig, search_problem

    cfg = SearchConfig(mode=mode, max_ops=max_ops, prior=False, **kw)
    t0 = time.perf_counter()
    results = [search_problem(r, cfg) for r in rows]
    dt = time.perf_counter() - t0
    solved = [r for r in results if r.matches]
    by_fallback = sum(1 for r in solved if r.stats.reuse_fallback)
    return ({
        "problems_per_s": len(rows) / dt,
        "coverage": len(solved) / len(rows),
        "coverage_without_reuse_fallback": (len(solved) - by_fallback) / len(rows),
        "mean_matches": sum(len(r.matches) for r in solved) / max(1, len(solved)),
        "budget_hits": sum(1 for r in results if r.stats.budget_hit),
    }, results)


def _fastest(a: dict | None, b: dict) -> dict:
    return b if a is None or b["problems_per_s"] > a["problems_per_s"] else a


def extraction_seconds(rows: list[dict]) -> float:
    """What the loader spends per problem on the numbers the baseline extracts itself."""
    from distill.quantities import mask_question, parse_answer

    t0 = time.perf_counter()
    for r in rows:
        mask_question(r["question"], r["lang"])
        parse_answer(r["answer_raw"])
    return time.perf_counter() - t0


def gold_figures(rows: list[dict], first, minimal) -> dict[str, float]:
    from distill.search.gold import equivalent, gold_readings, random_points

    eq_first = eq_min = 0
    for row, f, m in zip(rows, first, minimal):
        g = gold_readings(row, f.constants)
        if not g.usable:
            continue
        k = len(row["quantities"])
        pts = random_points(max(1, k))
        eq_first += bool(f.matches) and equivalent(f.matches[0].tree, g, k, f.constants, pts)
        eq_min += any(equivalent(x.tree, g, k, m.constants, pts) for x in m.matches)
    return {"first_is_gold": _r(eq_first / len(rows)), "gold_in_minimal": _r(eq_min / len(rows))}


def run_top(rows: list[dict], **kw) -> dict[str, Any]:
    from distill.search import SearchConfig, run_search

    cfg = SearchConfig(mode="top", max_ops=3, **kw)
    t0 = time.perf_counter()
    run = run_search(rows, cfg, against_gold=True)
    dt = time.perf_counter() - t0
    s = run.summary
    return {"problems": len(rows), "problems_per_s": _r(len(rows) / dt, 1),
            "coverage": s["coverage"], "mean_matches": s["mean_matches"],
            "top_gold_equivalent_all": s["top_gold_equivalent_all"],
            "top_gold_equivalent_usable": s["top_gold_equivalent"], "gold_usable": s["gold_usable"],
            "by_gold_ops": s["by_gold_ops"]}


# ------------------------------------------------------------------------------ baseline
def run_baseline(nv, rows: list[dict], mode: str, kmax: int, gold: bool) -> dict[str, Any]:
    """One pass of the baseline's main() loop (extraction, answer parsing, search), timed the
    same way."""
    solved = 0
    found = []
    t0 = time.perf_counter()
    for r in rows:
        qv = [v for v, _, _ in nv.extract_numbers(r["question"], r["lang"])]
        ans = nv.parse_answer(str(r["answer_raw"]))
        if ans is None:
            found.append((qv, None))
            continue
        res = nv.search(qv, ans, kmax=kmax, cap_s=2.0, mode="first" if mode == "first" else "all")
        solved += res["found_k"] is not None
        found.append((qv, res))
    dt = time.perf_counter() - t0
    out = {"problems_per_s": len(rows) / dt, "coverage": solved / len(rows),
           "capped": sum(1 for _, res in found if res is not None and res["capped"])}
    if gold:
        eq = 0
        for r, (qv, res) in zip(rows, found):
            if res is None or res["found_k"] is None:
                continue
            tree, _ = nv.gold_rhs(r["equation"] or "")
            if tree is None:
                continue
            _, cands, _ = nv.gold_to_candidates(tree, qv)
            if not cands:
                continue
            pts = nv.random_points(len(qv))
            gold_fps = {nv.fingerprint(c, pts) for c in cands}
            trees = [res["first"]] if mode == "first" else res["matches"]
            eq += any(nv.fingerprint(t, pts) in gold_fps for t in trees)
        out["first_is_gold" if mode == "first" else "gold_in_minimal"] = eq / len(rows)
    return out


# ------------------------------------------------------------------------------ scaling
class _TimedSearch:
    """The stage's search UDF, recording when each batch started and ended."""

    def __init__(self, config: dict):
        from distill.search.stage import SearchUDF

        self.inner = SearchUDF(config)

    def __call__(self, batch):
        import pyarrow as pa

        t0 = time.time()
        out = self.inner(batch)
        t1 = time.time()
        n = out.num_rows
        return pa.table({"id": out.column("id"), "t0": pa.array([t0] * n), "t1": pa.array([t1] * n)})


def scaling(runs: list[tuple[str, list[dict], str]], repeats: int = 3) -> dict[str, Any]:
    """Busy span of the search map with 1 and 2 actors (Ray started once, 2 CPUs), for each
    ``(label, rows, mode)``; 1 and 2 alternate ``repeats`` times, the fastest of each counts."""
    import ray
    import ray.data

    from distill.search import SearchConfig
    from distill.search.stage import plan_batches

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    out: dict[str, Any] = {}
    for label, rows, mode in runs:
        config = SearchConfig(mode=mode, max_ops=3)
        cfg = config.model_dump(mode="json")
        batch_size, blocks = plan_batches(len(rows), config.batch_size, 2)
        spans: dict[int, float] = {}
        for workers in (1, 2) * repeats:
            ds = ray.data.from_items(rows, override_num_blocks=blocks)
            ds = ds.map_batches(
                _TimedSearch, fn_constructor_kwargs={"config": cfg}, batch_size=batch_size,
                batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1)
            t0s, t1s = [], []
            for b in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                t0s.extend(b.column("t0").to_pylist())
                t1s.extend(b.column("t1").to_pylist())
            spans[workers] = min(spans.get(workers, float("inf")), max(t1s) - min(t0s))
        out[label] = {"problems": len(rows), "mode": mode, "blocks": blocks,
                      "seconds_1_worker": _r(spans[1], 3), "seconds_2_workers": _r(spans[2], 3),
                      "problems_per_s_1_worker": _r(len(rows) / spans[1], 1),
                      "problems_per_s_2_workers": _r(len(rows) / spans[2], 1),
                      "speedup": _r(spans[1] / spans[2], 3)}
        print(f"scaling {label:28s} " + json.dumps(out[label]), flush=True)
    ray.shutdown()
    out["how"] = ("the stage's SearchUDF in ActorPoolStrategy(size=1) vs (size=2) on a 2-CPU local "
                  "Ray; span from the first batch started to the last finished (start-up excluded); "
                  f"1 and 2 workers alternated {repeats} times, the fastest of each")
    return out


# ------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path,
                    default=Path(os.environ.get("MATHDISTILL_DATA_DIR", REPO.parent / "shared" / "data")))
    ap.add_argument("--quick", action="store_true",
                    help="300 problems per set, 1,000 of Math23K train for quality (a smoke run).")
    ap.add_argument("--skip-baseline", action="store_true", help="Ours only.")
    ap.add_argument("--scaling-repeats", type=int, default=3,
                    help="Runs of 1 and of 2 workers, alternated (fastest counts).")
    ap.add_argument("--parts", default="speed,quality,scaling",
                    help="Comma-separated parts to run: speed, quality, scaling.")
    ap.add_argument("--repeat", type=int, default=5, help="Runs of ours per figure (fastest counts).")
    ap.add_argument("--repeat-baseline", type=int, default=2,
                    help="Runs of the baseline in mode first (fastest counts; minimal runs once).")
    a = ap.parse_args(argv)
    sets = load_sets(a.data_dir, a.quick)
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "speed": {}, "quality": {}}
    scaling_runs = [("math23k_train_2000_top", sets["math23k_train_2000"], "top"),
                    # first / minimal take ~0.3 ms a problem: all of train gives the workers
                    # seconds of work rather than Ray's per-batch overhead
                    ("math23k_train_all_minimal", sets["math23k_train_all"], "minimal"),
                    ("math23k_train_all_first", sets["math23k_train_all"], "first")]
    parts = set(a.parts.split(","))
    nv = None if a.skip_baseline else _load_baseline()
    for name in ("math23k_train_2000", "mawps_all") if "speed" in parts else ():
        rows = sets[name]
        entry: dict[str, Any] = {"problems": len(rows)}
        ext = extraction_seconds(rows) / len(rows)
        entry["extraction_ms_per_problem"] = _r(ext * 1000)
        keep = {}
        for kmax in (3, 4):
            for mode in ("first", "minimal"):
                tag = f"{mode}_k{kmax}"
                # ours and the baseline interleaved (the load of a shared machine changes
                # over minutes), the fastest run of each counts
                n_base = 0 if nv is None else (a.repeat_baseline if mode == "first" else 1)
                plan = ["ours", "base"] * n_base + ["ours"] * max(1, a.repeat - n_base)
                ours = base = None
                for who in plan:
                    if who == "ours":
                        fig, results = run_ours(rows, mode, kmax)
                        ours = _fastest(ours, fig)
                    else:
                        base = _fastest(base, run_baseline(nv, rows, mode, kmax, gold=kmax == 3))
                if kmax == 3:
                    keep[mode] = results
                ours["problems_per_s_with_extraction"] = 1 / (1 / ours["problems_per_s"] + ext)
                line: dict[str, Any] = {"ours": {k: _r(v) for k, v in ours.items()}}
                if base is not None:
                    line["baseline"] = {k: _r(v) for k, v in base.items()}
                    line["ratio"] = round(ours["problems_per_s"] / base["problems_per_s"], 2)
                    line["ratio_with_extraction"] = round(
                        ours["problems_per_s_with_extraction"] / base["problems_per_s"], 2)
                    line["coverage_ours_minus_baseline"] = _r(ours["coverage"] - base["coverage"])
                entry[tag] = line
                print(f"{name:19s} {tag:10s} " + json.dumps(line), flush=True)
        entry["gold_k3_ours"] = gold_figures(rows, keep["first"], keep["minimal"])
        print(f"{name:19s} gold k3 (ours) " + json.dumps(entry["gold_k3_ours"]), flush=True)
        neg, _ = run_ours(rows, "first", 3, allow_negative=True)  # one run: coverage
        entry["first_k3_negative_intermediates"] = {k: _r(v) for k, v in neg.items()}
        print(f"{name:19s} first_k3 negative intermediates "
              + json.dumps(entry["first_k3_negative_intermediates"]), flush=True)
        report["speed"][name] = entry
    if "quality" in parts:
        variants = (("default", {}), ("allow_reuse", {"allow_reuse": True}),
                    ("no_reuse_fallback", {"reuse_fallback": False}), ("no_prior", {"prior": False}))
        for name in ("mawps_all", "math23k_train_all", "math23k_train_2000"):
            report["quality"][name] = {}
            for label, kw in variants if name != "math23k_train_2000" else variants[:1]:
                fig = run_top(sets[name], **kw)
                report["quality"][name][label] = fig
                print(f"{name:19s} top_k3 {label:18s} " + json.dumps(fig), flush=True)
    if "scaling" in parts:
        report["scaling"] = scaling(scaling_runs, a.scaling_repeats)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
