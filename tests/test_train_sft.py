"""SFT data: the masked-gold mapping (with skip reasons), equation targets, and SFTExample
rows for every target."""

from __future__ import annotations

import pytest

from distill.records import SFT_EXAMPLE_SCHEMA, make_problem, to_table
from distill.sft.core import (
    STAGE_KEYPOINTS,
    STAGE_SOLVE,
    build_sft_examples,
    equation_target,
    keypoints_source,
    mask_gold_equation,
    masked_gold_equation,
    masked_gold_equations,
    solve_source,
)


def _p(question: str, answer, equation: str | None, sid: str = "1") -> dict:
    return make_problem(dataset="t", split="train", source_id=sid, question=question, answer=answer,
                        equation=equation)


@pytest.mark.parametrize("question, answer, gold, expected", [
    # one quantity per literal; "22.0" is 22
    ("A waiter had 22 customers. 14 left; 4 per table. Tables?", 2, "X=((22.0-14.0)/4.0)", "(N0 - N1) / N2"),
    # literal order differs from the text's order
    ("It takes 8 hours per window. 11 windows, 4 done.", 56, "X=(11.0-4.0)*8.0", "(N1 - N2) * N0"),
    # an allowed constant that is not a quantity stays a number
    ("A garden is 5 m long and 3 m wide. Perimeter?", 16, "x=(5+3)*2", "(N0 + N1) * 2"),
    ("He scored 45 out of 50. What percent?", 90, "x=45/50*100", "N0 / N1 * 100"),
    # several quantities with one value: the first unused one, in reading order
    ("Tom has 3 red, 3 blue and 4 green balls.", 10, "x=3+3+4", "N0 + N1 + N2"),
    # all used up: reuse the first
    ("A square has side 3. Area?", 9, "x=3*3", "N0 * N0"),
    # a quantity equal to a constant is still the quantity
    ("He bought 2 pens at 7 dollars each.", 14, "x=2*7", "N0 * N1"),
    # percent quantity (canonical 0.25) against a 25% literal
    ("A shirt costs 80 dollars with 25% off. Discount?", 20, "x=80*25%", "N0 * N1"),
    # a folded sign: -7 is neg N1
    ("Add 10 and the opposite of 7.", 3, "x=10+(-7)", "N0 + (-N1)"),
    # implicit equation: kept whole, unknown renamed x
    ("7 times a number plus 4 equals 3 times it minus 20.", -6, "(7.0*y)+4.0=(3.0*y)-20.0",
     "N0 * x + N1 = N2 * x - N3"),
    # x on the right
    ("She had 6 and got 52 more.", 58, "6+52=x", "N0 + N1"),
])
def test_masked_gold_equation(question, answer, gold, expected) -> None:
    row = _p(question, answer, gold)
    assert masked_gold_equation(row) == expected
    assert mask_gold_equation(row) == (expected, None)


@pytest.mark.parametrize("question, answer, gold, reason", [
    ("He has 5 apples.", 5, None, "no_gold_equation"),
    ("He has 5 apples.", 5, "x=(5+", "unparsable_gold"),
    ("He has 5 apples.", 5, "x=5+y", "several_unknowns"),
    ("Interest on 8100 at 0.15 for 1 year?", 1215, "x=8100.0*15.0*0.01", "unmapped_literal"),
    ("He has 5 apples and 0 pears.", 0, "x=5/0", "unsolvable_gold"),
    ("He has 5 apples and 6 pears.", 12, "x=5+6", "gold_disagrees_with_answer"),
])
def test_masked_gold_equation_skip_reasons(question, answer, gold, reason) -> None:
    row = _p(question, answer, gold)
    assert mask_gold_equation(row) == (None, reason)
    assert masked_gold_equation(row) is None


def test_masked_gold_quadratic_agrees_when_one_root_is_the_answer() -> None:
    row = _p("(6+x)(x-6) is 189 for which negative x?", -15, "(6.0+x)*(x-6.0)=189.0")
    assert masked_gold_equation(row) == "(N0 + x) * (x - N1) = N2"


def test_masked_gold_equations_counts_and_agrees_with_synthetic_gold() -> None:
    from distill.data.synthetic import SyntheticConfig, generate
    from distill.evaluate.infer import equation_answer

    rows = generate(SyntheticConfig(), "train", n=200)
    rows.append(_p("He has 5 apples.", 5, None, "x"))
    eqs, skipped = masked_gold_equations(rows)
    assert skipped == {"no_gold_equation": 1} and len(eqs) == 200
    same = 0
    for r in rows[:200]:
        target = equation_target(eqs[r["id"]])
        # the source's own masked gold (a column) is the one taken ...
        assert target == equation_target(r["masked_equation"])
        assert equation_answer(target, r["quantities"]) == (r["answer"], None)
        # ... and the masking from values alone mostly agrees with it
        guessed, _ = mask_gold_equation({**r, "masked_equation": None})
        same += equation_target(guessed) == target
    assert same >= 190  # the rest pick the other of two equal values, or a distractor's


def test_a_source_masked_gold_is_checked_like_any_gold() -> None:
    row = _p("Tom has 3 apples and buys 4 more. How many?", 7, "x=3+4")
    assert mask_gold_equation({**row, "masked_equation": "x=N1+N0"}) == ("N1 + N0", None)
    assert mask_gold_equation({**row, "masked_equation": "x=N0+N5"}) == (None, "unmapped_literal")
    assert mask_gold_equation({**row, "masked_equation": "x=N0*N1"}) == (
        None, "gold_disagrees_with_answer")
    assert mask_gold_equation({**row, "masked_equation": "x=(N0"}) == (None, "unparsable_gold")


@pytest.mark.parametrize("equation, prefix, infix", [
    ("N0 * (N1 + N2)", "* N0 + N1 N2", "N0 * (N1 + N2)"),
    ("x=(N0-N1)/N2", "/ - N0 N1 N2", "(N0 - N1) / N2"),
    ("X = N0 * 100.0 / 2", "/ * N0 100 2", "N0 * 100 / 2"),
    ("N0*y+N1=N2", "= + * N0 x N1 N2", "N0 * x + N1 = N2"),
    ("N0 - (-N1)", "- N0 neg N1", "N0 - (-N1)"),
])
def test_equation_target_notations(equation, prefix, infix) -> None:
    assert equation_target(equation, "prefix") == prefix
    assert equation_target(equation, "infix") == infix


@pytest.mark.parametrize("equation", ["N0 + (", "x + y = N0", "x + N0", "N5 + N0"])
def test_equation_target_rejects(equation) -> None:
    from distill.equations import EquationError

    with pytest.raises(EquationError):
        equation_target(equation, "prefix", n_quantities=2)


@pytest.fixture()
def problems() -> list[dict]:
    return [
        _p("Tom has 3 apples and buys 4 more. How many?", 7, "x=3+4", "a"),
        _p("小明有5个苹果，吃了2个，还剩几个？", 3, "x=5-2", "b"),
        _p("A box holds 6 eggs. How many in 2 boxes?", 12, None, "c"),
    ]


def test_equation_targets(problems) -> None:
    eqs, skipped = masked_gold_equations(problems)
    assert skipped == {"no_gold_equation": 1}
    eqs["t/c"] = "N0 * N7"  # a placeholder the problem lacks
    for target, texts in (("equation_prefix", ["+ N0 N1", "- N0 N1"]),
                          ("equation_infix", ["N0 + N1", "N0 - N1"])):
        built = build_sft_examples(problems, target, equations=eqs)
        assert [r["target_text"] for r in built.rows] == texts
        assert [r["source_text"] for r in built.rows] == [problems[0]["masked_question"],
                                                          problems[1]["masked_question"]]
        assert {r["stage"] for r in built.rows} == {STAGE_SOLVE}
        assert built.skipped == {"bad_equation": 1}
        assert to_table(built.rows, SFT_EXAMPLE_SCHEMA).num_rows == 2
    built = build_sft_examples(problems, "equation_prefix", equations={})
    assert built.skipped == {"no_equation": 3} and built.to_dict()["examples"] == 0
    with pytest.raises(ValueError, match="needs `equations`"):
        build_sft_examples(problems, "equation_prefix")
    with pytest.raises(ValueError, match="unknown target 'sql'"):
        build_sft_examples(problems, "sql", equations=eqs)


def _rationale(pid, idx, verdict="correct", **kw) -> dict:
    base = {"id": pid, "strategy": "x", "source": "teacher", "sample_idx": idx, "prompt": None,
            "completion": None, "key_points": None, "program": None, "equation": None,
            "masked_equation": None, "predicted": None, "verdict": verdict, "error": None, "tokens_in": None,
            "tokens_out": None, "latency_s": None, "meta": "{}"}
    return {**base, **kw}


def test_pot_cot_and_kpdd_targets(problems) -> None:
    a, b = problems[0]["id"], problems[1]["id"]
    rats = [
        _rationale(a, 0, program="print(3 + 4)", completion="3 + 4 = 7. The answer is 7.",
                   key_points="Question: total apples. Facts: 3 apples, buys 4."),
        _rationale(a, 1, program="print(3 + 4)", completion="3 plus 4 is 7.",
                   key_points="Question: total apples. Facts: 3 apples, buys 4."),  # same program
        _rationale(a, 2, verdict="wrong", program="print(3 * 4)", completion="12", key_points="k"),
        _rationale(b, 0, completion="5 - 2 = 3", key_points="问题：还剩几个。"),  # no program
        _rationale("t/zzz", 0, program="print(1)"),
    ]
    pot = build_sft_examples(problems, "pot", rationales=rats)
    assert [(r["problem_id"], r["target_text"]) for r in pot.rows] == [(a, "print(3 + 4)")]
    assert pot.rows[0]["source_text"] == problems[0]["question"]
    assert pot.skipped == {"unknown_problem": 1, "no_rationale": 2}

    cot = build_sft_examples(problems, "cot", rationales=rats)
    assert [r["target_text"] for r in cot.rows] == ["3 + 4 = 7. The answer is 7.", "3 plus 4 is 7.", "5 - 2 = 3"]
    assert build_sft_examples(problems, "cot", rationales=rats, max_per_problem=1).to_dict()["examples"] == 2

    kpdd = build_sft_examples(problems, "kpdd", rationales=rats)
    assert [(r["problem_id"], r["stage"]) for r in kpdd.rows] == [
        (a, STAGE_KEYPOINTS), (a, STAGE_SOLVE), (b, STAGE_KEYPOINTS), (b, STAGE_SOLVE)]
    kp, solve = kpdd.rows[0], kpdd.rows[1]
    assert kp["source_text"] == keypoints_source(problems[0]["question"])
    assert kp["target_text"] == "Question: total apples. Facts: 3 apples, buys 4."
    assert solve["source_text"] == solve_source(problems[0]["question"], kp["target_text"])
    assert solve["target_text"] == "print(3 + 4)"  # the program when there is one
    assert kpdd.rows[3]["target_text"] == "5 - 2 = 3"  # else the text
    with pytest.raises(ValueError, match="needs `rationales`"):
        build_sft_examples(problems, "kpdd")


def test_missing_problem_column_is_named() -> None:
    with pytest.raises(ValueError, match="masked_question"):
        build_sft_examples([{"id": "x", "question": "q", "quantities": []}], "pot", rationales=[])
