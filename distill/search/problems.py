"""The search stage's pure core over Problem rows: search, prior, ranking, Rationale rows, report.

Needs from a Problem row: ``id``, ``lang``, ``quantities`` (canonical values), ``answer``
(canonical value); ``question`` and ``equation`` for the gold report. Gives Rationale rows
(:data:`distill.records.RATIONALE_SCHEMA`, ``strategy = source = "search"``): one per kept match,
best first (``sample_idx`` is the rank; ``top_n`` rows in modes minimal/top, one in mode first),
or a single row saying why there is none -- verdict ``wrong`` when nothing matched (``error``
names the budget when it was hit), ``error`` when there was nothing to search (no numeric
answer, no quantities).

A kept match's row carries: ``equation`` -- ``x = <expression over the real numbers>`` in the
canonical order; ``masked_equation`` -- the same over the placeholders ``N0..Nk``
(``x = N0 * (1 - N1)``, what the SFT stage trains on); ``program`` -- a plain-Python PoT
rendering (assigns and prints ``answer``); ``predicted`` -- the exact value; ``latency_s`` --
the problem's search time; and in ``meta`` (JSON, the search's own extras, read by no other
stage): ``prefix`` and ``prefix_masked`` (Polish notation), ``template``, ``rank``, ``score``
and its ``features``, ``n_matches`` (ambiguity), ``exact``, the search ``stats``, ``mode`` and
``max_ops``. A row without a match has ``equation`` and ``masked_equation`` null.

Two passes (:func:`run_search` in process; :mod:`distill.search.stage` on Ray): the first
searches every problem and collects the template prior; the second ranks with it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

from distill.equations import Equation, Num, Var, to_infix, to_prefix, to_python
from distill.quantities import canonical, parse_number
from distill.records import require_columns
from distill.search.config import SearchConfig
from distill.search.engine import Match, Search, SearchStats
from distill.search.expr import Tree, canonical_tree, leaves, to_ast
from distill.search.rank import Features, Ranked, TemplatePrior, features, rank

__all__ = [
    "REQUIRED_COLUMNS",
    "ProblemResult",
    "search_problem",
    "prior_of",
    "rank_result",
    "rationale_rows",
    "render_program",
    "run_search",
    "SearchRun",
    "summarize",
    "gold_check",
    "gold_summary",
]

REQUIRED_COLUMNS = ("id", "lang", "quantities", "answer")


@dataclass
class ProblemResult:
    """One problem's search: its numbers, the distinct matches (unranked) and statistics."""

    id: str
    lang: str
    quantities: list[Fraction]
    constants: list[Fraction]
    target: Fraction | None
    matches: list[Match] = field(default_factory=list)
    features: list[Features] = field(default_factory=list)  # filled by ranking
    stats: SearchStats = field(default_factory=SearchStats)
    error: str | None = None  # why there was nothing to search
    question: str | None = None
    equation: str | None = None  # the gold, when the row has one

    @property
    def solved(self) -> bool:
        return bool(self.matches)


def search_problem(row: Mapping[str, Any], config: SearchConfig) -> ProblemResult:
    """Search one Problem row under ``config`` (stop rule, grammar, budget). With
    ``reuse_fallback`` a problem that nothing matches is searched again with quantity reuse,
    within what is left of its budget (``stats.reuse_fallback`` says so)."""
    lang = row.get("lang") or "en"
    cvals = _constant_values(tuple(config.constant_texts(lang)))
    qtexts = row.get("quantities") or []
    qvals = [_number(str(q)) for q in qtexts]
    target = _number(str(row["answer"])) if row.get("answer") is not None else None
    res = ProblemResult(str(row["id"]), lang, qvals, list(cvals), target,
                        question=row.get("question"), equation=row.get("equation"))
    if target is None:
        res.error = "the answer is not a number"
        return res
    if None in qvals:
        res.error = f"unreadable quantities {list(qtexts)}"
        return res
    s, matches = _search(qvals, cvals, target, config, config.allow_reuse,
                         config.max_expressions, config.max_ms)
    st = s.stats
    if (not matches and config.reuse_fallback and not config.allow_reuse
            and not st.budget_hit and not st.skipped):
        left_exprs = None if config.max_expressions is None else config.max_expressions - st.expressions
        left_ms = None if config.max_ms is None else config.max_ms - st.time_ms
        if (left_exprs is None or left_exprs > 0) and (left_ms is None or left_ms > 0):
            s, matches = _search(qvals, cvals, target, config, True, left_exprs, left_ms)
            s.stats.add_earlier(st)
            st = s.stats
    res.matches = matches
    res.stats = st
    res.constants = list(s.constants)
    if st.skipped:
        res.error = st.skipped
    return res


def _search(qvals, cvals, target, config: SearchConfig, reuse: bool, max_expressions,
            max_ms) -> tuple[Search, list[Match]]:
    s = Search(qvals, cvals, target, max_ops=config.max_ops, ops=config.ops, allow_reuse=reuse,
               allow_negative=config.allow_negative, rel_tol=config.rel_tol,
               max_expressions=max_expressions, max_ms=max_ms)
    return s, s.run(config.engine_mode)


def _features(result: ProblemResult) -> list[Features]:
    """The ranking features of the result's matches (computed once, on first need)."""
    if len(result.features) != len(result.matches):
        result.features = [features(m, len(result.quantities), result.constants)
                           for m in result.matches]
    return result.features


@lru_cache(maxsize=64)
def _constant_values(texts: tuple[str, ...]) -> tuple[Fraction, ...]:
    return tuple(_number(t) for t in texts)


@lru_cache(maxsize=4096)
def _number(text: str) -> Fraction | None:
    """A canonical value (``18``, ``14.4``, ``4/7``, as Problem rows hold them), or any other
    number form through :func:`distill.quantities.parse_number`."""
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError, TypeError):
        return parse_number(text)


def prior_of(result: ProblemResult, config: SearchConfig) -> TemplatePrior:
    """One problem's contribution to the template prior (one unit spread over its matches)."""
    prior = TemplatePrior()
    feats = _features(result)
    if feats:
        base = [f.base_score(config.weights) for f in feats]
        prior.add(feats, TemplatePrior.shares(feats, base, config.weights))
    return prior


def rank_result(result: ProblemResult, config: SearchConfig, prior: TemplatePrior | None) -> list[Ranked]:
    return rank(result.matches, len(result.quantities), result.constants, config.weights,
                prior if config.prior else None, feats=_features(result))


# ------------------------------------------------------------------------------ renderings
def render_program(tree: Tree, quantities: Sequence[Fraction], constants: Sequence[Fraction]) -> str:
    """A plain-Python PoT program computing the expression: one variable per quantity used
    (named after its placeholder), constants inline; it assigns and prints ``answer``. The
    expression is :func:`distill.equations.to_python` of the tree."""
    used = sorted({leaf for leaf in leaves(tree) if leaf >= 0})
    lines = [f"N{i} = {to_python(Num(quantities[i]))}" for i in used]
    lines.append(f"answer = {to_python(to_ast(tree, constants))}")
    lines.append("print(answer)")
    return "\n".join(lines) + "\n"


def _empty_row(result: ProblemResult, verdict: str, error: str, meta: dict) -> dict:
    return {
        "id": result.id, "strategy": "search", "source": "search", "sample_idx": 0,
        "prompt": None, "completion": None, "key_points": None, "program": None,
        "equation": None, "masked_equation": None, "predicted": None, "verdict": verdict,
        "error": error,
        "tokens_in": None, "tokens_out": None,
        "latency_s": result.stats.time_ms / 1000, "meta": json.dumps(meta, ensure_ascii=False),
    }


def rationale_rows(result: ProblemResult, ranked: Sequence[Ranked], config: SearchConfig,
                   extra_meta: Mapping[str, Any] | None = None) -> list[dict]:
    """Rationale rows of one problem: the best ``top_n`` matches (one in mode ``first``), or one
    row saying why there is none (verdict ``wrong``: no match; ``error``: nothing to search)."""
    base_meta = {"mode": config.mode, "max_ops": config.max_ops, "n_matches": len(result.matches),
                 "stats": result.stats.to_dict(), **(extra_meta or {})}
    if result.error and not result.matches:
        return [_empty_row(result, "error", result.error, base_meta)]
    if not ranked:
        hit = result.stats.budget_hit
        why = (f"budget ({hit}) hit before a match" if hit
               else f"no expression with at most {config.max_ops} operators matches")
        return [_empty_row(result, "wrong", why, base_meta)]
    keep = 1 if config.mode == "first" else config.top_n
    rows = []
    cvals = result.constants
    for i, r in enumerate(ranked[:keep]):
        canon = canonical_tree(r.match.tree, cvals)
        masked = to_ast(canon, cvals)
        real = to_ast(canon, cvals, result.quantities)
        meta = {
            **base_meta,
            "rank": i,
            "prefix": to_prefix(real),
            "prefix_masked": to_prefix(masked),
            "template": to_infix(masked),
            "score": round(r.score, 6),
            "features": r.to_dict(),
            "exact": r.match.exact,
        }
        rows.append({
            "id": result.id, "strategy": "search", "source": "search", "sample_idx": i,
            "prompt": None, "completion": None, "key_points": None,
            "program": render_program(canon, result.quantities, cvals),
            "equation": to_infix(Equation(Var("x"), real)),
            "masked_equation": to_infix(Equation(Var("x"), masked)),
            "predicted": canonical(r.match.value), "verdict": "correct", "error": None,
            "tokens_in": None, "tokens_out": None,
            "latency_s": result.stats.time_ms / 1000,
            "meta": json.dumps(meta, ensure_ascii=False),
        })
    return rows


# ------------------------------------------------------------------------------ gold report
def gold_check(result: ProblemResult, top: Ranked | None) -> dict[str, Any]:
    """Whether the top match is equivalent to the problem's gold equation
    (:mod:`distill.search.gold`): ``{"gold": True | False | None (no usable gold), "gold_ops",
    "gold_reason"}``."""
    from distill.search.gold import equivalent, gold_readings, random_points

    row = {"equation": result.equation, "question": result.question or "", "lang": result.lang}
    g = gold_readings(row, result.constants)
    if not g.usable:
        return {"gold": None, "gold_ops": g.ops, "gold_reason": g.reason}
    ok = top is not None and equivalent(top.match.tree, g, len(result.quantities), result.constants,
                                        random_points(max(1, len(result.quantities))))
    return {"gold": bool(ok), "gold_ops": g.ops, "gold_reason": None}


def gold_summary(checks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Coverage of the gold report: the share of problems with a usable gold equation whose
    top match is equivalent to it (``top_gold_equivalent``), the same over all problems
    (``top_gold_equivalent_all``), and by the gold's operator count."""
    usable = [c for c in checks if c.get("gold") is not None]
    eq = sum(1 for c in usable if c["gold"])
    by_ops: dict[str, Counter] = {}
    for c in usable:
        ops = c.get("gold_ops") or 0
        bucket = by_ops.setdefault(f"{min(ops, 5)}{'+' if ops >= 5 else ''}", Counter())
        bucket["problems"] += 1
        bucket["equivalent"] += bool(c["gold"])
    reasons = Counter((c.get("gold_reason") or "").split(":")[0] for c in checks if c.get("gold") is None)
    return {
        "gold_usable": len(usable),
        "gold_unusable_reasons": dict(reasons.most_common()),
        "top_gold_equivalent": round(eq / len(usable), 6) if usable else None,
        "top_gold_equivalent_all": round(eq / len(checks), 6) if checks else None,
        "by_gold_ops": {k: {"problems": c["problems"],
                            "top_gold_equivalent": round(c["equivalent"] / c["problems"], 6)}
                        for k, c in sorted(by_ops.items())},
    }


def summarize(results: Sequence[ProblemResult], elapsed_s: float) -> dict[str, Any]:
    """The stage summary: problems, solved, coverage, mean_matches (over solved problems),
    problems_per_s, budget_hits, plus skipped problems and time."""
    n = len(results)
    solved = [r for r in results if r.matches]
    return {
        "problems": n,
        "solved": len(solved),
        "coverage": round(len(solved) / n, 6) if n else 0.0,
        "mean_matches": round(sum(len(r.matches) for r in solved) / len(solved), 4) if solved else 0.0,
        "problems_per_s": round(n / elapsed_s, 2) if elapsed_s > 0 else None,
        "budget_hits": sum(1 for r in results if r.stats.budget_hit),
        "errors": sum(1 for r in results if r.error and not r.matches),
        "elapsed_s": round(elapsed_s, 3),
    }


@dataclass
class SearchRun:
    results: list[ProblemResult]
    ranked: list[list[Ranked]]
    rows: list[dict]
    prior: TemplatePrior | None
    summary: dict[str, Any]


def run_search(rows: Iterable[Mapping[str, Any]], config: SearchConfig,
               against_gold: bool = False) -> SearchRun:
    """Both passes in this process (no Ray): search every row, learn the prior, rank, render."""
    rows = list(rows)
    if rows:
        require_columns(rows[0].keys(), REQUIRED_COLUMNS, "search")
    t0 = time.perf_counter()
    results = [search_problem(r, config) for r in rows]
    prior = None
    if config.prior and config.mode != "first":
        prior = TemplatePrior()
        for res in results:
            prior.merge(prior_of(res, config))
    ranked = [rank_result(res, config, prior) for res in results]
    elapsed = time.perf_counter() - t0
    out_rows = [row for res, rk in zip(results, ranked) for row in rationale_rows(res, rk, config)]
    summary = summarize(results, elapsed)
    if against_gold:
        summary.update(gold_summary([gold_check(res, rk[0] if rk else None)
                                     for res, rk in zip(results, ranked)]))
    return SearchRun(results, ranked, out_rows, prior, summary)


