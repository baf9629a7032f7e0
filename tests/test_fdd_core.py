"""FDD's feedback and augmentation (distill/fdd/core.py): the easy/hard split by the majority
of the student's samples, and labelled similar problems for the hard ones that never repeat an
evaluation, training or earlier new problem."""

from __future__ import annotations

import random

from distill.data.decontam import normalize_question
from distill.equations import parse, value_of
from distill.fdd.core import similar_problems, split_easy_hard
from distill.quantities import parse_number
from distill.records import make_problem


def _pred(pid: str, gold: str, predicted: str | None, s: int) -> dict:
    return {"id": pid, "gold": gold, "predicted": predicted, "sample_idx": s}


def test_a_problem_is_easy_when_the_majority_of_samples_is_right():
    rows = [_pred("a", "7", "7", 0), _pred("a", "7", "7.0", 1), _pred("a", "7", "9", 2),
            _pred("b", "7", "9", 0), _pred("b", "7", "9", 1), _pred("b", "7", "7", 2),
            _pred("c", "5", None, 0), _pred("c", "5", None, 1),
            _pred("d", "0.5", "1/2", 0)]
    assert split_easy_hard(rows) == (["a", "d"], ["b", "c"])


def _problem(pid: int, question: str, answer: str) -> dict:
    return make_problem(dataset="t", split="train", source_id=pid, question=question,
                        answer=answer)


def test_similar_problems_for_the_hard_ones_are_labelled_and_new():
    hard = [_problem(1, "Tom has 3 apples and buys 4 more. How many apples does he have?", "7"),
            _problem(2, "A box holds 12 pens. How many pens are in 25 boxes?", "300"),
            _problem(3, "Sam has 5 cards.", "5"),                  # no label
            _problem(4, "Ann reads 9 pages a day for 3 days.", "27")]  # label gives 12, not 27
    labels = {hard[0]["id"]: ["x = N0 + N1"], hard[1]["id"]: ["x = N0 * N1"],
              hard[3]["id"]: ["x = N0 + N1"]}
    evaluation = {normalize_question(q) for q in (
        "Tom has 5 apples and buys 4 more. How many apples does he have?",)}
    aug = similar_problems(hard, labels, 3, random.Random(0), avoid=evaluation)
    assert aug.sources == 3 and aug.rejected["no_label"] == 1
    assert aug.rejected["label_not_verified"] == 1
    assert len(aug.problems) == 6 and set(aug.labels) == {p["id"] for p in aug.problems}
    questions = [normalize_question(p["question"]) for p in aug.problems]
    assert len(set(questions)) == 6 and not set(questions) & evaluation
    for p in aug.problems:  # each label gives its problem's answer, exactly
        values = {f"N{i}": parse_number(q) for i, q in enumerate(p["quantities"])}
        assert value_of(parse(aug.labels[p["id"]]), values) == parse_number(p["answer"])
    again = similar_problems(hard, labels, 3, random.Random(0), avoid=evaluation)
    assert [p["question"] for p in again.problems] == [p["question"] for p in aug.problems]
