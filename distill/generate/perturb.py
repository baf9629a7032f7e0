"""The offline FDD teacher (``teacher: perturb``): similar problems from verified ones, no LLM.

FDD asks a teacher for new problems *similar* to those the student fails. Without an LLM, a
problem whose equation is verified (its gold equation, or an accepted label that gives its
answer) yields similar problems by giving its quantities new values of the same kind and
computing the answer again, exactly, from the same equation:

* integers stay integers with about the same magnitude (as many digits; at least 1; a
  thousands separator kept), decimals keep their number of decimal places, percentages stay
  in 1–99 % (whole percents when the original was), fractions and number words are kept as
  they are (their wording depends on the value);
* the source is verified first: its equation on its own quantities gives its answer (the one
  grader, :func:`distill.grading.answers_match`);
* the answer is the equation evaluated (or solved for ``x``) on the new values
  (:func:`distill.equations.value_of`);
  a variant is kept only when that answer is of the original answer's kind: a whole number
  stays a whole number, a positive answer positive, a decimal a terminating decimal of at most
  four places; and when the new question, read again by :func:`distill.records.make_problem`,
  gives back exactly the new values (the rendering must not change how the text reads);
* a variant whose question is an evaluation problem's (normalized, as the data stage's
  decontamination compares them) or repeats one already made is dropped.

*Harder* variants (``fdd_harder``: one more step) need a teacher that can write a new
sentence; they are left to the LLM teachers (``fdd_harder`` strategy).

Pure Python (``random.Random`` given by the caller, so variants are reproducible).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Collection, Mapping

from distill.equations import EquationError, parse, parse_prefix, placeholders, value_of
from distill.quantities import canonical

__all__ = ["PerturbResult", "perturb_problem", "KEPT_KINDS"]

#: Quantity kinds given new values (fractions, mixed numbers and number words are kept).
KEPT_KINDS = ("integer", "decimal", "percent")
_MAX_PLACES = 4


@dataclass
class PerturbResult:
    """The variants of one problem and why the other attempts were set aside."""

    problems: list[dict[str, Any]] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


def _tree(equation: str):
    try:
        return parse(equation)
    except EquationError:
        return parse_prefix(equation)


def _places(text: str) -> int:
    digits = text.replace(",", "").rstrip("%")
    return len(digits.split(".", 1)[1]) if "." in digits else 0


def _new_value(text: str, value: Fraction, kind: str, rng: random.Random) -> tuple[str, Fraction]:
    """A new (text, value) for one quantity, of its kind and about its magnitude."""
    if kind == "percent":
        places = _places(text)
        scale = 10 ** places
        pct = Fraction(rng.randint(1 * scale, 99 * scale), scale)
        shown = f"{float(pct):.{places}f}" if places else str(int(pct))
        return f"{shown}%", pct / 100
    places = _places(text) if kind == "decimal" else 0
    scale = 10 ** places
    whole = abs(int(value))
    digits = len(str(whole)) if whole else 1
    lo = 10 ** (digits - 1) if digits > 1 else 1
    hi = 10 ** digits - 1
    units = rng.randint(lo * scale, hi * scale + (scale - 1))
    if places and units % 10 == 0:
        units += rng.randint(1, 9)  # a decimal written with its places keeps a last digit
    new = Fraction(units, scale)
    if value < 0:
        new = -new
    shown = f"{float(new):.{places}f}" if places else str(int(new))
    if "," in text and not places:
        shown = f"{int(new):,}"
    return shown, new


def _answer_kind_kept(old: Fraction, new: Fraction) -> str | None:
    """None when ``new`` is of ``old``'s kind, else the reason it is not."""
    if old.denominator == 1 and new.denominator != 1:
        return "answer_not_whole"
    if old > 0 and new <= 0:
        return "answer_not_positive"
    if old >= 0 and new < 0:
        return "answer_negative"
    if new.denominator != 1:
        d = new.denominator
        for p in (2, 5):
            while d % p == 0:
                d //= p
        if d != 1 or len(canonical(new).split(".", 1)[-1]) > _MAX_PLACES:
            return "answer_not_short_decimal"
    return None


def perturb_problem(problem: Mapping[str, Any], equation: str, n: int, rng: random.Random, *,
                    avoid: Collection[str] = (), tries_per_variant: int = 8) -> PerturbResult:
    """Up to ``n`` variants of ``problem`` (a Problem row) whose ``equation`` (over its
    placeholders ``N0``, ``N1``, …; infix or prefix) is verified, as new Problem rows.

    Each row has a new ``id`` (``<id>~p<j>``), the new question, the recomputed ``answer``,
    ``masked_equation`` (the equation given), ``split`` ``fdd`` and ``meta`` recording the
    teacher, the source problem and the labelling rule. ``avoid``: normalized questions that
    must not be produced (the evaluation sets'; :func:`distill.data.decontam.normalize_question`).
    Raises ValueError when the problem's equation does not give its answer (not verified)."""
    from distill.data.decontam import normalize_question
    from distill.grading import answers_match
    from distill.quantities import extract_quantities, parse_number
    from distill.records import RecordError, make_problem

    question, lang = str(problem["question"]), problem.get("lang")
    found = extract_quantities(question, lang)
    values = [parse_number(q) for q in problem["quantities"]]
    if [q.value for q in found] != values:
        raise ValueError(f"problem {problem.get('id')}: its quantities do not read back from "
                         "its question")
    tree = _tree(equation)
    if any(i >= len(values) for i in placeholders(tree)):
        raise ValueError(f"problem {problem.get('id')}: equation {equation!r} names a quantity "
                         "the problem does not have")
    bind = {f"N{i}": v for i, v in enumerate(values)}
    try:
        old_answer = value_of(tree, bind)  # exact (a source may print 31/3 as 10.333…)
    except EquationError as e:
        raise ValueError(f"problem {problem.get('id')}: {e}") from None
    if not answers_match(canonical(old_answer), problem.get("answer")):
        raise ValueError(f"problem {problem.get('id')}: equation {equation!r} does not give "
                         f"its answer {problem.get('answer')!r}")
    changeable = [i for i, q in enumerate(found) if q.kind in KEPT_KINDS]
    result = PerturbResult()
    if not changeable:
        result.reject("no_quantity_to_change")
        return result
    seen = set(avoid) | {normalize_question(question)}
    for _ in range(n * tries_per_variant):
        if len(result.problems) >= n:
            break
        texts = [q.text for q in found]
        new_values = list(values)
        for i in changeable:
            texts[i], new_values[i] = _new_value(found[i].text, values[i], found[i].kind, rng)
        new_question = question
        for q, text in sorted(zip(found, texts), key=lambda p: -p[0].start):
            new_question = new_question[:q.start] + text + new_question[q.end:]
        key = normalize_question(new_question)
        if key in seen:
            result.reject("seen_or_evaluation_problem")
            continue
        try:
            answer = value_of(tree, {f"N{i}": v for i, v in enumerate(new_values)})
        except EquationError:
            result.reject("equation_fails")
            continue
        why = _answer_kind_kept(old_answer, answer)
        if why:
            result.reject(why)
            continue
        j = len(result.problems)
        try:
            row = make_problem(
                dataset=str(problem.get("dataset", "")), split="fdd",
                source_id=f"{problem.get('id')}~p{j}", question=new_question,
                answer=canonical(answer), lang=lang, masked_equation=equation,
                meta={"teacher": "perturb", "source_id": problem.get("id"),
                      "label_rule": "equation of the source problem recomputed exactly"})
        except RecordError:
            result.reject("unreadable")
            continue
        if [parse_number(q) for q in row["quantities"]] != new_values:
            result.reject("reads_differently")
            continue
        row["id"] = f"{problem.get('id')}~p{j}"
        seen.add(key)
        result.problems.append(row)
    return result
