"""The offline FDD teacher (distill/generate/perturb.py): its invariants.

Every variant's answer is its equation recomputed exactly on the new values; quantities keep
their kinds (integers, decimals with their places, percentages in range); answers keep the
original's kind; no evaluation problem comes out; the same seed gives the same variants.
"""

from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path

import pytest

from distill.data.decontam import normalize_question
from distill.equations import evaluate, parse, value_of
from distill.generate.perturb import perturb_problem
from distill.quantities import extract_quantities, parse_number
from distill.records import make_problem, meta_of

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _problem(question: str, answer: str, equation: str) -> dict:
    row = make_problem(dataset="t", split="train", source_id=1, question=question, answer=answer)
    row["masked_equation"] = equation
    return row


CASES = [
    ("Tom has 3 apples and buys 4 more. How many apples does he have?", "7", "N0 + N1"),
    ("A box holds 12 pens. How many pens are in 25 boxes?", "300", "N0 * N1"),
    ("A rope is 7.5 meters long. 2.25 meters are cut off. How long is it now?", "5.25",
     "N0 - N1"),
    ("There are 1,200 seats and 30% are empty. How many seats are empty?", "360", "N0 * N1"),
    ("48 cookies are shared equally among 6 children. How many does each get?", "8", "N0 / N1"),
]


@pytest.mark.parametrize("question, answer, equation", CASES)
def test_variants_keep_kinds_and_their_answers_are_recomputed_exactly(question, answer, equation):
    source = _problem(question, answer, equation)
    result = perturb_problem(source, equation, 6, random.Random(3))
    assert result.problems, result.rejected
    tree = parse(equation)
    old = extract_quantities(question)
    old_answer = parse_number(answer)
    for row in result.problems:
        new = extract_quantities(row["question"])
        assert [q.kind for q in new] == [q.kind for q in old], row["question"]
        values = [parse_number(q) for q in row["quantities"]]
        assert [q.value for q in new] == values
        # the answer is the source's equation on the new values, exactly
        assert parse_number(row["answer"]) == evaluate(tree, {f"N{i}": v
                                                              for i, v in enumerate(values)})
        got = parse_number(row["answer"])
        if old_answer.denominator == 1:
            assert got.denominator == 1 and got > 0
        for q_old, q_new in zip(old, new):
            if q_old.kind == "integer":
                assert len(str(abs(int(q_new.value)))) == len(str(abs(int(q_old.value))))
                assert ("," in q_new.text) == ("," in q_old.text)
            elif q_old.kind == "decimal":
                assert len(q_new.text.split(".")[1]) == len(q_old.text.split(".")[1])
            elif q_old.kind == "percent":
                assert Fraction(1, 100) <= q_new.value <= Fraction(99, 100)
        assert row["masked_equation"] == equation and row["split"] == "fdd"
        meta = meta_of(row)
        assert meta["teacher"] == "perturb" and meta["source_id"] == source["id"]
        assert row["question"] != question
    assert len({r["question"] for r in result.problems}) == len(result.problems)
    assert len({r["id"] for r in result.problems}) == len(result.problems)


def test_the_same_seed_gives_the_same_variants():
    source = _problem(*CASES[1])
    first = perturb_problem(source, CASES[1][2], 5, random.Random(9)).problems
    again = perturb_problem(source, CASES[1][2], 5, random.Random(9)).problems
    assert [r["question"] for r in first] == [r["question"] for r in again]


def test_no_evaluation_problem_comes_out():
    question, answer, equation = CASES[0]
    source = _problem(question, answer, equation)
    # every variant one seed makes, declared an evaluation problem: none may come out again
    made = perturb_problem(source, equation, 20, random.Random(5)).problems
    avoid = {normalize_question(r["question"]) for r in made}
    again = perturb_problem(source, equation, 20, random.Random(5), avoid=avoid)
    assert not {normalize_question(r["question"]) for r in again.problems} & avoid
    assert again.rejected.get("seen_or_evaluation_problem", 0) > 0


def test_answers_of_another_kind_are_set_aside():
    # 48 / 6: most new pairs do not divide; they are rejected as not whole, never kept
    source = _problem(*CASES[4])
    result = perturb_problem(source, CASES[4][2], 10, random.Random(0))
    assert result.rejected.get("answer_not_whole", 0) > 0
    assert all(parse_number(r["answer"]).denominator == 1 for r in result.problems)


def test_an_unverified_equation_is_refused():
    source = _problem(*CASES[0])
    with pytest.raises(ValueError, match="does not give its answer"):
        perturb_problem(source, "N0 * N1", 3, random.Random(0))
    with pytest.raises(ValueError, match="does not have"):
        perturb_problem(source, "N0 + N5", 3, random.Random(0))


def test_words_and_fractions_are_kept_as_written():
    # "Half" (N0) and "Three" (N2) are words: only the 40 changes
    source = _problem("Half of the 40 students are girls. Three of them wear hats. How many "
                      "girls do not wear hats?", "17", "N0 * N1 - N2")
    kinds = [q.kind for q in extract_quantities(source["question"])]
    assert kinds == ["word", "integer", "word"]
    rows = perturb_problem(source, "N0 * N1 - N2", 4, random.Random(2)).problems
    assert rows
    for row in rows:
        assert row["question"].startswith("Half of the ") and "Three of them" in row["question"]
        assert row["quantities"][0] == "0.5" and row["quantities"][2] == "3"


@pytest.mark.skipif(not (SHARED / "mawps").exists(), reason="../shared data absent")
def test_on_mawps_gold_equations_most_problems_give_variants():
    from distill.data.base import get_loader

    from distill.sft.core import masked_gold_equations

    rows = get_loader("mawps").load("train", SHARED).problems[:200]
    equations, _ = masked_gold_equations(rows)  # the gold over each problem's placeholders
    gave, tried = 0, 0
    for row in rows:
        if row["id"] not in equations:
            continue
        tried += 1
        equation = equations[row["id"]]
        result = perturb_problem(row, equation, 2, random.Random(0))
        for new in result.problems:
            values = {f"N{i}": parse_number(q) for i, q in enumerate(new["quantities"])}
            assert parse_number(new["answer"]) == value_of(parse(equation), values)
        gave += bool(result.problems)
    assert tried > 150 and gave / tried > 0.8, (gave, tried)
