"""Weak supervision by equation search (FLTT's answer-only labels): expressions over a problem's
quantities and allowed constants that give its answer, de-duplicated, ranked, rendered as
Rationale rows. The core imports without Ray; :func:`search_dataset` runs it on Ray Data.

    from distill.search import SearchConfig, run_search
    run = run_search(problem_rows, SearchConfig(max_ops=3, mode="top"))
    run.rows[0]["equation"], run.summary["coverage"]
"""

from distill.search.config import SearchConfig
from distill.search.engine import (
    Match,
    Search,
    SearchStats,
    enumerate_distinct,
    needs_tolerance,
)
from distill.search.problems import (
    ProblemResult,
    SearchRun,
    rank_result,
    rationale_rows,
    render_program,
    run_search,
    search_problem,
)
from distill.search.rank import Ranked, RankWeights, TemplatePrior
from distill.search.stage import search_dataset

__all__ = [
    "SearchConfig",
    "RankWeights",
    "Search",
    "Match",
    "SearchStats",
    "enumerate_distinct",
    "needs_tolerance",
    "ProblemResult",
    "SearchRun",
    "Ranked",
    "TemplatePrior",
    "search_problem",
    "rank_result",
    "rationale_rows",
    "render_program",
    "run_search",
    "search_dataset",
]
