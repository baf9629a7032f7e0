"""Dataset statistics: split sizes, rejects, and two checks of the gold labels.

* ``gold_equation_agreement``: of the problems that have a gold equation, the share whose
  equation, solved for its unknown (implicit equations included), agrees with the stated
  answer under :func:`distill.grading.answers_match`.
* ``quantity_coverage``: of the same problems, the share for which every number the gold
  equation uses is one of the quantities extracted from the text or an allowed constant. A
  gold that writes a percentage quantity as ``n*0.01``, ``n/100`` or ``n%`` uses that quantity;
  a parenthesised fraction ``(1/3)`` may be one quantity or two; ``0.01`` is covered where the
  constant 100 is allowed (``n*0.01`` is ``n/100``).

Both say how usable a dataset is for equation search and teacher verification; the misses are
returned by kind so label errors and extractor gaps can be told apart.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from distill.data.base import LoadResult, get_loader
from distill.data.config import Origin
from distill.equations import EquationError, literal_numbers
from distill.grading import grade_equation
from distill.quantities import Quantity, extract_quantities, parse_number

_PERCENT_FACTOR = Fraction(1, 100)


def unexplained_literals(
    equation: str, quantities: Sequence[Quantity], constants: Iterable[Fraction]
) -> list[str]:
    """The numbers of ``equation`` that are neither a quantity nor a constant (empty = covered)."""
    values = {q.value for q in quantities}
    allowed = values | set(constants)
    percent_bases = {q.value * 100 for q in quantities if q.kind == "percent"}
    missing = []
    for lit in literal_numbers(equation):
        if lit.value in allowed:
            continue
        if lit.value in percent_bases:  # the percentage written without its % sign
            continue
        # `n*0.01` is `n/100`: covered by a percentage in the text, or by the constant 100
        # (MAWPS writes cents to dollars this way).
        if lit.value == _PERCENT_FACTOR and (percent_bases or 100 in allowed):
            continue
        if lit.fraction_parts and all(p in allowed for p in lit.fraction_parts):
            continue
        missing.append(lit.text)
    return missing


def check_gold(
    row: Mapping[str, Any], constants: Iterable[Fraction]
) -> tuple[bool, str | None, bool, list[str]]:
    """For one Problem row with an equation: (agrees, why not, covered, unexplained numbers)."""
    equation = row["equation"]
    if row["answer_raw"] is None:
        agrees, why = False, "no answer"
    else:
        grade = grade_equation(equation, row["answer_raw"])
        agrees = grade.equal
        why = None if agrees else ("equation unparsable" if grade.method == "unparsable" else "disagrees")
    try:
        missing = unexplained_literals(
            equation, extract_quantities(row["question"], row["lang"]), constants
        )
    except EquationError:
        missing = ["<unparsable>"]
    return agrees, why, not missing, missing


def gold_stats(rows: Iterable[Mapping[str, Any]], constants: Sequence[str]) -> dict[str, Any]:
    """Agreement and coverage over the rows that carry a gold equation, with the misses."""
    consts = [parse_number(c) for c in constants]
    n = agree = covered = 0
    disagreements: list[dict[str, Any]] = []
    uncovered: list[dict[str, Any]] = []
    unexplained: Counter = Counter()
    for row in rows:
        if not row.get("equation"):
            continue
        n += 1
        ok, why, cov, missing = check_gold(row, consts)
        agree += ok
        covered += cov
        if not ok:
            disagreements.append(
                {"id": row["id"], "equation": row["equation"], "answer": row["answer_raw"], "why": why}
            )
        if not cov:
            uncovered.append({"id": row["id"], "equation": row["equation"], "missing": missing})
            unexplained.update(missing)
    return {
        "problems_with_equation": n,
        "gold_equation_agreement": round(agree / n, 6) if n else None,
        "quantity_coverage": round(covered / n, 6) if n else None,
        "disagreements": disagreements,
        "uncovered": uncovered,
        "unexplained_numbers": dict(unexplained.most_common(20)),
    }


def dataset_stats(
    name: str, data_dir: Path, constants: Sequence[str], splits: Sequence[str] | None = None,
    source: Origin = "local", revision: str | None = None,
) -> dict[str, Any]:
    """Counts per split, rejects per split, and gold checks over the distinct problems.

    The gold checks run over ``all`` when the dataset has it (the other splits are subsets of
    it), else over the union of the splits, each problem once. ``source="hub"`` reads the
    dataset's Hugging Face Hub copy at ``revision`` (:mod:`distill.data.hub`; its splits are
    the Hub source's) instead of the files under ``data_dir``.
    """
    loader = get_loader(name)
    if source == "hub":
        from distill.data.hub import hub_source, load_hub

        available = list(hub_source(name).splits)
    else:
        available = loader.splits(data_dir)
    chosen = list(splits) if splits else available
    results: dict[str, LoadResult] = {}
    for split in chosen:
        if source == "hub":
            results[split] = load_hub(name, split, revision)
        else:
            loader.check_split(split, data_dir)
            results[split] = loader.load(split, data_dir)
    checked = ["all"] if "all" in results else chosen
    seen: set[str] = set()
    rows = []
    for split in checked:
        for row in results[split].problems:
            if row["id"] not in seen:
                seen.add(row["id"])
                rows.append(row)
    gold = gold_stats(rows, constants)
    return {
        "dataset": name,
        "source": source,
        **({"revision": revision} if source == "hub" else {}),
        "splits": {s: len(r.problems) for s, r in results.items()},
        "rejects": sum(len(r.rejects) for r in results.values()),
        "rejects_by_split": {s: len(r.rejects) for s, r in results.items()},
        "gold_checked_on": checked,
        **gold,
    }
