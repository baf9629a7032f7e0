"""Verification: a teacher's completion(s) for a problem -> parsed rationale + verdict + reason.

Takes a Problem row (``question``, ``answer``, ``answer_raw``, ``quantities``, ``lang``), a
strategy (:mod:`distill.generate.strategies`) and what the teacher wrote; gives a
:class:`Verification`: ``verdict`` (``correct`` | ``wrong`` | ``error`` | ``unparsable``), a
``reason`` for every verdict but ``correct``, the ``predicted`` answer (canonical when it is a
number), the parsed parts (``parsed.program`` / ``equation`` / ``key_points`` / ``question``)
and ``info`` (which rule decided).

The checks, by what the strategy produces, all through the project's single implementations:

* **answer** (cot, kpdd_cot): the parsed final answer against the gold by
  :func:`distill.grading.grade`. A final answer that is not a readable number while the gold
  is one is ``unparsable``.
* **program** (pot, kpdd_pot): the program runs in the sandbox (:mod:`distill.sandbox`; many
  programs at once through ``run_programs``); a failed run (timeout, memory, forbidden,
  syntax, runtime, no answer) is ``error`` with the sandbox's reason; its answer is then
  graded like a final answer. Programs are never run outside the sandbox.
* **equation** (fltt_equation, fltt_masked_equation): it parses
  (:func:`distill.equations.parse`; else ``unparsable``); every number it uses is a quantity
  of the problem or an allowed constant (:func:`distill.data.stats.unexplained_literals`);
  a masked equation uses placeholders ``N0..N{k-1}`` of the problem's k quantities and no
  other number but the constants; solved for its unknown (placeholders bound to the
  quantities) it gives the gold (:func:`distill.grading.grade_equation`). A failed check is
  ``wrong`` with the check named.
* **problem** (fdd_harder, fdd_similar): the new problem is well formed -- it has numbers,
  asks a question and is not the source problem again. It has no gold: ``correct`` means
  "usable", and its answer is labelled later by teacher self-consistency (FDD stage).

A problem without a gold answer (answer and answer_raw both null) cannot be checked: a
rationale that parsed (and ran) is ``error`` with reason ``no gold answer``; its ``predicted``
is kept (what self-consistency labelling needs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from distill.equations import DEFAULT_CONSTANTS, EquationError, parse, placeholders, solve_all
from distill.grading import DEFAULT_REL_TOL, grade, grade_equation
from distill.quantities import (canonical, canonical_answer_text, extract_quantities,
                                parse_number)
from distill.records import VERDICTS
from distill.generate.parsers import Parsed

if TYPE_CHECKING:
    from distill.sandbox import ExecResult
    from distill.generate.strategies import Strategy

__all__ = [
    "NO_GOLD",
    "Verification",
    "check_answer",
    "check_equation",
    "check_new_problem",
    "check_program",
    "verify",
    "verify_many",
]

NO_GOLD = "no gold answer to check against"
RunPrograms = Callable[[list[str]], "list[ExecResult]"]


@dataclass
class Verification:
    verdict: str
    reason: str | None = None
    predicted: str | None = None
    parsed: Parsed = field(default_factory=lambda: Parsed(False))
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.verdict in VERDICTS, self.verdict


def _gold(problem: Mapping[str, Any]) -> str | None:
    gold = problem.get("answer")
    return gold if gold is not None else problem.get("answer_raw")


def check_answer(answer: str, problem: Mapping[str, Any], *, rel_tol: float = DEFAULT_REL_TOL,
                 parsed: Parsed | None = None) -> Verification:
    """A final answer (text) against the problem's gold."""
    parsed = parsed or Parsed(True, answer=answer)
    predicted = canonical_answer_text(answer)
    gold = _gold(problem)
    if gold is None:
        return Verification("error", NO_GOLD, predicted, parsed)
    g = grade(answer, gold, rel_tol=rel_tol)
    info = {"grade": g.method}
    if g.equal:
        return Verification("correct", None, predicted, parsed, info)
    if g.method == "unparsable":
        return Verification("unparsable", f"final answer {answer!r} is not a number", predicted,
                            parsed, info)
    if g.method in ("timeout", "error"):
        return Verification("error", f"answer check failed ({g.method})", predicted, parsed, info)
    return Verification("wrong", f"predicted {predicted} but the answer is {gold}", predicted,
                        parsed, info)


def check_program(result: ExecResult, problem: Mapping[str, Any], *,
                  rel_tol: float = DEFAULT_REL_TOL, parsed: Parsed | None = None) -> Verification:
    """A sandbox result (:class:`distill.sandbox.ExecResult`) against the gold."""
    parsed = parsed or Parsed(True)
    info = {"exec_error": result.error, "exec_source": result.source}
    if not result.ok:
        detail = f": {result.detail}" if result.detail else ""
        return Verification("error", f"program failed ({result.error}){detail}"[:500], None,
                            parsed, info)
    v = check_answer(result.answer, problem, rel_tol=rel_tol, parsed=parsed)
    v.info.update(info)
    return v


def _constants(constants: Sequence[str] | None) -> list[Fraction]:
    return [parse_number(str(c)) for c in (constants if constants is not None else DEFAULT_CONSTANTS)]


def check_equation(equation: str, problem: Mapping[str, Any], *, masked: bool,
                   constants: Sequence[str] | None = None, rel_tol: float = DEFAULT_REL_TOL,
                   parsed: Parsed | None = None) -> Verification:
    """An equation: parses, uses only the problem's quantities (placeholders when masked) and
    the allowed constants, and solves to the gold."""
    from distill.data.stats import unexplained_literals

    parsed = parsed or Parsed(True, equation=equation)
    try:
        tree = parse(equation)
    except EquationError as e:
        return Verification("unparsable", f"equation does not parse: {e}", None, parsed)
    quantities = [parse_number(q) for q in problem.get("quantities") or []]
    used = placeholders(tree)
    bindings: dict[str, Fraction] = {}
    if masked:
        beyond = [f"N{i}" for i in used if i >= len(quantities)]
        if beyond:
            return Verification("wrong", f"uses {', '.join(beyond)} but the problem has "
                                f"{len(quantities)} quantities", None, parsed)
        bindings = {f"N{i}": quantities[i] for i in used}
        known = []  # the quantities are the placeholders: any bare number must be a constant
    else:
        if used:
            return Verification("wrong", "placeholders in an equation over the problem's own "
                                "numbers", None, parsed)
        known = extract_quantities(problem["question"], problem.get("lang"))
    unexplained = unexplained_literals(equation, known, _constants(constants))
    try:
        roots = solve_all(tree, bindings=bindings)
    except EquationError as e:
        return Verification("wrong", f"equation cannot be solved: {e}", None, parsed)
    gold = _gold(problem)
    info: dict[str, Any] = {"roots": [canonical(r) for r in roots[:4]]}
    predicted = canonical(roots[0])
    if gold is None:
        return Verification("error", NO_GOLD, predicted, parsed, info)
    g = grade_equation(equation, gold, bindings=bindings, rel_tol=rel_tol)
    info["grade"] = g.method
    if g.equal and len(roots) > 1:
        predicted = next((canonical(r) for r in roots if grade(r, gold, rel_tol=rel_tol).equal),
                         predicted)
    if unexplained:
        return Verification("wrong", "uses numbers that are neither quantities of the problem "
                            f"nor allowed constants: {unexplained}", predicted, parsed, info)
    if not g.equal:
        return Verification("wrong", f"solves to {predicted} but the answer is {gold}",
                            predicted, parsed, info)
    return Verification("correct", None, predicted, parsed, info)


_QUESTION_WORD = re.compile(r"\b(?:how|what|which|who|when|find|calculate)\b|多少|几|求|\?|？",
                            re.IGNORECASE)


def check_new_problem(question: str, problem: Mapping[str, Any], *,
                      parsed: Parsed | None = None) -> Verification:
    """A new problem (FDD) is well formed: numbers, a question, not the source again."""
    from distill.data.decontam import normalize_question

    parsed = parsed or Parsed(True, question=question)
    quantities = extract_quantities(question)
    info = {"quantities": [canonical(q.value) for q in quantities]}
    if not quantities:
        return Verification("wrong", "the new problem has no numbers", None, parsed, info)
    if not _QUESTION_WORD.search(question):
        return Verification("wrong", "the new problem asks no question", None, parsed, info)
    if normalize_question(question) == normalize_question(problem["question"]):
        return Verification("wrong", "the new problem repeats the source problem", None,
                            parsed, info)
    return Verification("correct", None, None, parsed, info)


def verify_many(
    problems: Sequence[Mapping[str, Any]],
    parsed: Sequence[Parsed],
    strategy: Strategy | str,
    *,
    run_programs: RunPrograms | None = None,
    constants: Sequence[str] | None = None,
    rel_tol: float = DEFAULT_REL_TOL,
) -> list[Verification]:
    """Verify parsed rationales of one strategy; every program of the batch goes to the
    sandbox in one ``run_programs`` call (default: :func:`distill.sandbox.run_programs`)."""
    from distill.generate.strategies import get_strategy

    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    if len(problems) != len(parsed):
        raise ValueError(f"{len(problems)} problems but {len(parsed)} parsed rationales")
    out: list[Verification | None] = [None] * len(problems)
    to_run: list[int] = []
    for i, (problem, p) in enumerate(zip(problems, parsed)):
        if not p.ok:
            out[i] = Verification("unparsable", p.reason or "unparsable", None, p)
        elif strat.output == "answer":
            out[i] = check_answer(p.answer, problem, rel_tol=rel_tol, parsed=p)
        elif strat.output == "equation":
            out[i] = check_equation(p.equation, problem, masked=getattr(strat, "masked", False),
                                    constants=constants, rel_tol=rel_tol, parsed=p)
        elif strat.output == "problem":
            out[i] = check_new_problem(p.question, problem, parsed=p)
        else:
            to_run.append(i)
    if to_run:
        if run_programs is None:
            from distill.sandbox import run_programs as default_run

            run_programs = default_run
        results = run_programs([parsed[i].program for i in to_run])
        if len(results) != len(to_run):
            raise RuntimeError(f"run_programs gave {len(results)} results for {len(to_run)} programs")
        for i, res in zip(to_run, results):
            out[i] = check_program(res, problems[i], rel_tol=rel_tol, parsed=parsed[i])
    return out  # type: ignore[return-value]


def verify(
    problem: Mapping[str, Any],
    strategy: Strategy | str,
    completion: str | Sequence[Mapping[str, Any]],
    *,
    config: Any = None,
    run_programs: RunPrograms | None = None,
) -> Verification:
    """One rationale: ``completion`` is the teacher's text (single-call strategies) or the
    list of calls ``[{"step": ..., "completion": ...}, ...]`` a multi-call strategy made.
    ``config`` (a :class:`~distill.generate.config.GenerateConfig`) gives kpdd_mode,
    constants and tolerance; without it the defaults apply."""
    from distill.generate.strategies import get_strategy

    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    if config is None:
        from distill.generate.config import GenerateConfig

        config = GenerateConfig(strategy=strat.name, engine="hf", model="-")
    if isinstance(completion, str):
        calls = [{"step": _single_step(strat, config), "completion": completion}]
    else:
        calls = list(completion)
    p = strat.parse(problem, calls, config)
    return verify_many([problem], [p], strat, run_programs=run_programs,
                       constants=config.constants, rel_tol=config.rel_tol)[0]


def _single_step(strat: Strategy, config: Any) -> str:
    return "equation" if strat.family == "fltt" else "solve"
