"""Gold equations over placeholders, and whether a found expression is equivalent to one.

Takes a Problem row with a gold ``equation`` and gives every reading of that equation over the
problem's placeholders ``N0..Nk`` (:func:`gold_readings`), then decides equivalence with a
search tree by evaluating both at random values of the placeholders (:func:`equivalent`).

A gold literal maps to the problem's quantities through
:func:`distill.equations.placeholder_readings` with the rules :mod:`distill.data.stats` counts
as covered (``lenient``): a quantity of equal value; an allowed constant; a percentage written
without its sign (``20`` for a ``20%`` quantity -> ``N*100``); ``0.01`` (``n*0.01`` is
``n/100``); the parts of a parenthesised fraction (``(1/3)`` -> ``N_a/N_b``). A literal that
several quantities (or a quantity and a constant) could be gives several readings; the gold
agrees with an expression when one reading does. Both sides are evaluated by
:mod:`distill.equations`; an implicit gold (``70-x=27``) is solved for its unknown at each
random point (:func:`distill.equations.solve_all`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping, Sequence

from distill.equations import (
    Equation,
    EquationError,
    UnmappedLiteral,
    Var,
    evaluate,
    operator_count,
    parse,
    placeholder_readings,
    solve_all,
)
from distill.grading import values_match
from distill.quantities import Quantity, extract_quantities
from distill.search.expr import Tree, to_ast

__all__ = ["GoldReadings", "gold_readings", "equivalent", "random_points"]

_MAX_READINGS = 64


@dataclass
class GoldReadings:
    """The gold of one problem over placeholders: ``readings`` (empty when unusable, with
    ``reason``), ``ops`` (the gold's operator count as written)."""

    readings: list[Equation]
    ops: int | None
    reason: str | None = None

    @property
    def usable(self) -> bool:
        return bool(self.readings)


def gold_readings(
    row: Mapping[str, Any], constants: Sequence[Fraction], quantities: Sequence[Quantity] | None = None
) -> GoldReadings:
    """Every reading of ``row["equation"]`` over the row's placeholders."""
    equation = row.get("equation")
    if not equation:
        return GoldReadings([], None, "no gold equation")
    try:
        node = parse(equation)
        ops = operator_count(node)
    except EquationError as e:
        return GoldReadings([], None, f"unparsable: {e}")
    if not isinstance(node, Equation):
        node = Equation(Var("x"), node)
    if quantities is None:
        quantities = extract_quantities(row["question"], row.get("lang"))
    try:
        readings = placeholder_readings(
            node, [q.value for q in quantities], set(constants),
            percent_quantities=[i for i, q in enumerate(quantities) if q.kind == "percent"],
            lenient=True, limit=_MAX_READINGS)
    except UnmappedLiteral as e:
        return GoldReadings([], ops, f"unmapped literal: {e.text} is neither a quantity nor a constant")
    return GoldReadings(readings, ops)


def random_points(n: int, trials: int = 3, seed: int = 0) -> list[list[Fraction]]:
    """Random exact values for ``N0..N{n-1}``, ``trials`` times."""
    rng = random.Random(seed)
    return [[Fraction(rng.randint(10**5, 10**7), rng.randint(7, 997)) for _ in range(n)]
            for _ in range(trials)]


def _bindings(point: Sequence[Fraction]) -> dict[str, Fraction]:
    return {f"N{i}": v for i, v in enumerate(point)}


def equivalent(
    tree: Tree,
    gold: GoldReadings,
    n_quantities: int,
    constants: Sequence[Fraction],
    points: Sequence[Sequence[Fraction]] | None = None,
) -> bool:
    """Whether ``tree`` (over ``N0..``) and one reading of the gold agree at every random point."""
    if not gold.readings:
        return False
    pts = points or random_points(max(1, n_quantities))
    expr = to_ast(tree, constants)
    try:
        values = [evaluate(expr, _bindings(p)) for p in pts]
    except EquationError:
        return False
    for reading in gold.readings:
        for p, v in zip(pts, values):
            try:
                roots = solve_all(reading, bindings=_bindings(p))
            except EquationError:
                break
            if not any(values_match(v, r, 1e-9) for r in roots):
                break
        else:
            return True
    return False
