"""SFT data: Problem rows (+ equations or teacher rationales) -> SFTExample rows.

Takes Problem rows (:data:`distill.records.PROBLEM_SCHEMA`) and, depending on the target,

* ``equation_prefix`` / ``equation_infix``: a mapping problem id -> equation over the problem's
  placeholders (from the equation search, or :func:`masked_gold_equations` for gold data);
  source = ``masked_question``, target = the equation in prefix (``* N0 N1``) or infix
  (``N0 * N1``) notation. ``x = <expression>`` is reduced to the expression; an implicit
  equation (``N0 * x + N1 = N2``) is kept whole, its unknown renamed ``x``.
* ``pot`` / ``cot``: Rationale rows (:data:`distill.records.RATIONALE_SCHEMA`); source =
  ``question``, target = ``program`` (pot) or ``completion`` (cot).
* ``kpdd``: Rationale rows carrying ``key_points``; two examples per rationale, stage
  ``keypoints`` (question -> key points) and stage ``solve`` (question + key points -> program,
  or completion when there is no program). The source formats are :func:`keypoints_source` and
  :func:`solve_source`, which inference uses too.

gives SFTExample rows (:data:`distill.records.SFT_EXAMPLE_SCHEMA`: problem_id, stage,
source_text, target_text) and a count of skipped problems per reason. Only rationales whose
verdict is ``correct`` are used; identical targets of one problem are kept once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Iterable, Mapping, Sequence

from distill.equations import (
    DEFAULT_CONSTANTS,
    BinOp,
    Equation,
    EquationError,
    Expr,
    Neg,
    Num,
    UnmappedLiteral,
    Var,
    evaluate,
    parse,
    placeholder_readings,
    placeholders,
    solve_all,
    to_infix,
    to_prefix,
    variables,
)
from distill.grading import answers_match
from distill.quantities import parse_number
from distill.records import require_columns

__all__ = [
    "STAGE_KEYPOINTS",
    "STAGE_SOLVE",
    "SFTBuild",
    "build_sft_examples",
    "equation_target",
    "keypoints_source",
    "mask_gold_equation",
    "masked_gold_equation",
    "masked_gold_equations",
    "solve_source",
]

STAGE_SOLVE = "solve"
STAGE_KEYPOINTS = "keypoints"


@dataclass
class SFTBuild:
    """The examples built and, per reason, the problems that gave none."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"examples": len(self.rows), "problems": len({r["problem_id"] for r in self.rows}),
                "skipped": dict(self.skipped.most_common())}


# ------------------------------------------------------------------------ source formats
def keypoints_source(question: str) -> str:
    """KPDD stage 1 input: the question, marked so one model can serve both stages."""
    return f"key points: {question}"


def solve_source(question: str, key_points: str) -> str:
    """KPDD stage 2 input: the question and its key points."""
    return f"solve: {question}\nkey points: {key_points}"


# ------------------------------------------------------------------ masked gold equations
def _values(quantities: Sequence[str]) -> list[Fraction]:
    out = []
    for q in quantities:
        v = parse_number(q)
        if v is None:
            raise ValueError(f"quantity {q!r} is not a canonical number")
        out.append(v)
    return out


def _explicit(eq: Equation) -> Expr | None:
    """The right side of ``x = <expr without x>`` (either way round), else None."""
    for lone, other in ((eq.lhs, eq.rhs), (eq.rhs, eq.lhs)):
        if isinstance(lone, Var) and lone.name not in variables(other):
            return other
    return None


def _rename_unknown(node: Expr | Equation, name: str) -> Expr | Equation:
    if isinstance(node, Equation):
        return Equation(_rename_unknown(node.lhs, name), _rename_unknown(node.rhs, name))
    cls = node.__class__
    if cls is Var:
        return Var("x") if node.name == name else node
    if cls is Neg:
        return Neg(_rename_unknown(node.operand, name))
    if cls is BinOp:
        return BinOp(node.op, _rename_unknown(node.left, name), _rename_unknown(node.right, name))
    return node


def mask_gold_equation(
    problem: Mapping[str, Any], constants: Iterable[str] = DEFAULT_CONSTANTS
) -> tuple[str | None, str | None]:
    """The gold equation over the problem's placeholders, or None and the reason why not.

    A problem whose source masked its gold itself (the ``masked_equation`` column of
    :data:`distill.records.PROBLEM_SCHEMA`, e.g. synthetic data) gives that one: the source
    knows which quantity each number is. Otherwise each literal of the gold equation becomes
    the placeholder of the quantity with its value (several quantities with that value: the
    first not used yet, in the equation's reading order); a literal no quantity has stays a
    number when it is an allowed constant. The result is infix text: an expression when the
    gold is ``x = <expression>`` (``(N0 - N1) / N2``), else the whole equation with its
    unknown named ``x``.

    Reasons: ``no_gold_equation``, ``unparsable_gold``, ``several_unknowns``,
    ``unmapped_literal`` (a literal that is neither a quantity nor a constant; for a
    source-masked gold, a placeholder beyond the problem's quantities), ``unsolvable_gold``,
    ``gold_disagrees_with_answer`` (label noise: the gold equation does not give the
    problem's answer).
    """
    source_masked = problem.get("masked_equation")
    gold = source_masked or problem.get("equation")
    if not gold:
        return None, "no_gold_equation"
    try:
        tree = parse(gold)
    except EquationError:
        return None, "unparsable_gold"
    unknowns = variables(tree)
    if len(unknowns) > 1:
        return None, "several_unknowns"
    if isinstance(tree, Equation):
        explicit = _explicit(tree)
        tree = explicit if explicit is not None else _rename_unknown(tree, unknowns[0])
    qvals = _values(problem["quantities"])
    if source_masked:
        if any(i >= len(qvals) for i in placeholders(tree)):
            return None, "unmapped_literal"
        masked = tree
    else:
        consts = {parse_number(str(c)) for c in constants}
        try:  # the preferred reading: each literal the first unused quantity of its value
            masked = placeholder_readings(tree, qvals, consts, limit=1)[0]
        except UnmappedLiteral:
            return None, "unmapped_literal"
    bindings = {f"N{i}": q for i, q in enumerate(qvals)}
    try:
        roots = solve_all(masked, bindings=bindings) if isinstance(masked, Equation) else (
            evaluate(masked, bindings),)
    except EquationError:
        return None, "unsolvable_gold"
    answer = problem.get("answer")
    # a quadratic gold agrees when one of its roots is the answer (as grade_equation rules)
    if answer is not None and not any(answers_match(r, answer) for r in roots):
        return None, "gold_disagrees_with_answer"
    return to_infix(masked), None


def masked_gold_equation(problem: Mapping[str, Any]) -> str | None:
    """:func:`mask_gold_equation` without the reason: the equation, or None."""
    return mask_gold_equation(problem)[0]


def masked_gold_equations(
    problems: Iterable[Mapping[str, Any]], constants: Iterable[str] = DEFAULT_CONSTANTS
) -> tuple[dict[str, str], Counter]:
    """problem id -> masked gold equation, and the count of problems skipped per reason."""
    constants = tuple(constants)
    out: dict[str, str] = {}
    skipped: Counter = Counter()
    for p in problems:
        eq, reason = mask_gold_equation(p, constants)
        if eq is None:
            skipped[reason] += 1
        else:
            out[p["id"]] = eq
    return out, skipped


# --------------------------------------------------------------------- equation targets
def _canonical_literals(node: Expr | Equation) -> Expr | Equation:
    if isinstance(node, Equation):
        return Equation(_canonical_literals(node.lhs), _canonical_literals(node.rhs))
    cls = node.__class__
    if cls is Num:
        return Num(node.value)  # "100.0" and "100" are one token sequence
    if cls is Neg:
        return Neg(_canonical_literals(node.operand))
    if cls is BinOp:
        return BinOp(node.op, _canonical_literals(node.left), _canonical_literals(node.right))
    return node


def equation_target(equation: str, notation: str = "prefix", n_quantities: int | None = None) -> str:
    """An equation over placeholders as a target text: ``prefix`` (``* N0 + N1 N2``) or
    ``infix`` (``N0 * (N1 + N2)``). ``x = <expr>`` becomes ``<expr>``; an implicit equation
    keeps its ``=`` and its one unknown, renamed ``x``. Raises EquationError (message says
    why) for text that does not parse, several unknowns, or a placeholder beyond
    ``n_quantities``."""
    tree = parse(equation)
    unknowns = variables(tree)
    if len(unknowns) > 1:
        raise EquationError(f"several unknowns {list(unknowns)}")
    if isinstance(tree, Equation):
        explicit = _explicit(tree)
        tree = explicit if explicit is not None else _rename_unknown(tree, unknowns[0])
    elif unknowns:
        raise EquationError(f"an expression with the unknown {unknowns[0]!r}")
    if n_quantities is not None and any(i >= n_quantities for i in placeholders(tree)):
        raise EquationError(f"placeholder beyond the problem's {n_quantities} quantities")
    tree = _canonical_literals(tree)
    if notation == "prefix":
        return to_prefix(tree)
    if notation == "infix":
        return to_infix(tree)
    raise ValueError(f"notation must be 'prefix' or 'infix' (got {notation!r})")


# ----------------------------------------------------------------------------- builder
PROBLEM_COLUMNS = ("id", "question", "masked_question", "quantities")


def build_sft_examples(
    problems: Iterable[Mapping[str, Any]],
    target: str,
    *,
    equations: Mapping[str, str] | None = None,
    rationales: Iterable[Mapping[str, Any]] | None = None,
    max_per_problem: int | None = None,
) -> SFTBuild:
    """SFTExample rows for ``target`` (see the module docstring) and skip counts.

    Skip reasons: ``no_equation`` / ``bad_equation`` (equation targets), ``no_rationale``
    (no correct rationale with the needed field), ``unknown_problem`` (a rationale whose id is
    not among ``problems``; counted per rationale).
    """
    problems = list(problems)
    if problems:
        require_columns(problems[0].keys(), PROBLEM_COLUMNS, "build_sft_examples")
    out = SFTBuild()
    if target in ("equation_prefix", "equation_infix"):
        if equations is None:
            raise ValueError(f"target {target!r} needs `equations` (problem id -> equation)")
        notation = target.split("_", 1)[1]
        for p in problems:
            eq = equations.get(p["id"])
            if not eq:
                out.skipped["no_equation"] += 1
                continue
            try:
                text = equation_target(eq, notation, len(p["quantities"]))
            except EquationError:
                out.skipped["bad_equation"] += 1
                continue
            out.rows.append(_row(p["id"], STAGE_SOLVE, p["masked_question"], text))
        return out
    if target not in ("pot", "cot", "kpdd"):
        raise ValueError(
            f"unknown target {target!r}; valid: equation_prefix, equation_infix, pot, cot, kpdd"
        )
    if rationales is None:
        raise ValueError(f"target {target!r} needs `rationales` (Rationale rows)")
    by_id: dict[str, list[Mapping[str, Any]]] = {}
    known = {p["id"] for p in problems}
    for r in rationales:
        if r["id"] not in known:
            out.skipped["unknown_problem"] += 1
        elif r.get("verdict") == "correct":
            by_id.setdefault(r["id"], []).append(r)
    for p in problems:
        made = 0
        seen: set[tuple[str, str]] = set()
        for r in sorted(by_id.get(p["id"], []), key=lambda r: r.get("sample_idx", 0)):
            if max_per_problem is not None and made >= max_per_problem:
                break
            pairs = _rationale_pairs(p["question"], r, target)
            if not pairs or pairs[-1][1:] in seen:
                continue
            seen.add(pairs[-1][1:])
            for stage, source, text in pairs:
                out.rows.append(_row(p["id"], stage, source, text))
            made += 1
        if not made:
            out.skipped["no_rationale"] += 1
    return out


def _rationale_pairs(question: str, r: Mapping[str, Any], target: str) -> list[tuple[str, str, str]]:
    program = (r.get("program") or "").strip()
    completion = (r.get("completion") or "").strip()
    if target == "pot":
        return [(STAGE_SOLVE, question, program)] if program else []
    if target == "cot":
        return [(STAGE_SOLVE, question, completion)] if completion else []
    key_points = (r.get("key_points") or "").strip()
    solution = program or completion
    if not key_points or not solution:
        return []
    return [(STAGE_KEYPOINTS, keypoints_source(question), key_points),
            (STAGE_SOLVE, solve_source(question, key_points), solution)]


def _row(pid: str, stage: str, source: str, target: str) -> dict[str, Any]:
    return {"problem_id": pid, "stage": stage, "source_text": source, "target_text": target}


def examples_for_labels(problems: Iterable[Mapping[str, Any]], target: str,
                        labels: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """SFT examples for equation ``target`` from each problem's labels (masked equations; one,
    or more when a refinement round added one): every problem's first label, then the second
    ones, and so on."""
    problems = list(problems)
    rows: list[dict[str, Any]] = []
    depth = max((len(v) for v in labels.values()), default=0)
    for i in range(depth):
        layer = {pid: ls[i] for pid, ls in labels.items() if len(ls) > i}
        rows += build_sft_examples(problems, target, equations=layer).rows
    return rows
