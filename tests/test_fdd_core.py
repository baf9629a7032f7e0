"""FDD's feedback and augmentation (distill/fdd/core.py): the easy/hard split by the majority
of the student's samples, labelled similar problems for the hard ones that never repeat an
evaluation, training or earlier new problem, and a language model's new problems read into
Problem rows and labelled by self-consistency."""

from __future__ import annotations

import json
import random

import pytest

from distill.data.decontam import normalize_question
from distill.equations import parse, value_of
from distill.fdd.core import (self_consistent_answers, similar_problems, split_easy_hard,
                              teacher_problems)
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


def _written(pid: str, strategy: str, k: int, question: str | None, verdict: str = "correct",
             error: str | None = None) -> dict:
    meta = {"new_question": question} if question else {}
    return {"id": pid, "strategy": strategy, "sample_idx": k, "source": "teacher-7b",
            "verdict": verdict, "error": error, "meta": json.dumps(meta)}


def test_a_teachers_new_problems_become_problem_rows_unless_unusable_or_known():
    source = _problem(1, "Tom has 3 apples and buys 4 more. How many apples does he have?", "7")
    known = {normalize_question("Ann has 2 pens and buys 5 more. How many pens does she have?")}
    rows = [
        _written(source["id"], "fdd_similar", 0, "Ann has 2 pens and buys 5 more. How many "
                 "pens does she have?"),                                       # evaluation
        _written(source["id"], "fdd_similar", 1, "Bo has 6 cups and breaks 2. How many cups "
                 "are left?"),
        _written(source["id"], "fdd_similar", 2, "Bo has 6 cups and breaks 2. How many cups "
                 "are left?"),                                                 # twice
        _written(source["id"], "fdd_similar", 3, None, "wrong", "not a question"),
        _written(source["id"], "fdd_harder", 0, "How many apples does Tom have in all?"),
        _written(source["id"], "fdd_harder", 1, "Tom has 3 apples, buys 4 more and eats 2. "
                 "How many apples are left?"),
    ]
    new, rejected = teacher_problems(rows, {source["id"]: source}, 2, avoid=known)
    assert [p["id"] for p in new] == [f"{source['id']}~r2h1", f"{source['id']}~r2s1"]
    assert [p["quantities"] for p in new] == [["3", "4", "2"], ["6", "2"]]
    assert all(p["split"] == "fdd" and p["answer"] is None and p["lang"] == "en" for p in new)
    assert json.loads(new[1]["meta"]) == {"teacher": "llm", "strategy": "fdd_similar",
                                          "source_id": source["id"], "model": "teacher-7b"}
    assert rejected == {"seen_or_evaluation_problem": 2, "unusable: not a question": 1,
                        "no_quantities": 1}


def test_self_consistency_keeps_a_majority_answer_with_enough_agreement():
    def sols(pid, *answers):
        return [{"id": pid, "predicted": a} for a in answers]

    rows = (sols("a", "7", "7.0", "14/2", "9", None)     # 3 of 5 agree (as numbers)
            + sols("b", "7", "7", "9", "9", "10")        # 2 of 5
            + sols("c", None, None, None, None, None)    # no answer
            + sols("d", "2", "2", "2"))                  # 3 of 5 asked: 2 never made
    labelled, rejected = self_consistent_answers(rows, 5, 0.6)
    assert set(labelled) == {"a", "d"}
    assert (labelled["a"].answer, labelled["a"].votes, labelled["a"].agreement) == ("7", 3, 0.6)
    assert labelled["d"].rule(0.6) == ("teacher self-consistency: 3 of 5 solutions give 2 (at "
                                       "least 0.6 needed)")
    assert rejected == {"too_little_agreement": 1, "no_answer": 1}
    assert set(self_consistent_answers(rows, 5, 0.4)[0]) == {"a", "b", "d"}


def test_an_llm_teacher_needs_its_section_and_a_perturb_teacher_refuses_one():
    from distill.fdd.config import FDDConfig

    llm = {"generate": {"engine": "openai", "model": "teacher-7b"}}
    assert FDDConfig(teacher="llm", llm=llm).llm.label_samples == 5
    with pytest.raises(ValueError, match="teacher 'llm' needs an `llm` section"):
        FDDConfig(teacher="llm")
    with pytest.raises(ValueError, match="teacher is 'perturb'"):
        FDDConfig(llm=llm)


def test_fdd_rounds_fit_the_runs_they_retrain():
    from distill.config import PipelineConfig

    llm = {"teacher": "llm", "llm": {"generate": {"engine": "openai", "model": "teacher-7b"}}}
    pot = {"name": "x", "teacher": "generate", "train": {"target": "pot"},
           "generate": {"engine": "openai", "model": "teacher-7b"}}
    assert PipelineConfig.model_validate({**pot, "fdd": llm}).fdd.teacher == "llm"
    with pytest.raises(ValueError, match="fdd.teacher 'perturb'"):
        PipelineConfig.model_validate({**pot, "fdd": {}})  # perturb needs equations
    with pytest.raises(ValueError, match="target 'equation_infix'"):
        PipelineConfig.model_validate({"name": "x", "train": {"target": "equation_infix"},
                                       "fdd": llm})
    assert PipelineConfig.model_validate({"name": "x", "fdd": llm}).fdd.llm.harder == 1
