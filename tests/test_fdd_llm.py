"""FDD with a language-model teacher (distill.fdd.stage.llm_new_problems) on a local Ray,
against a scripted OpenAI-compatible server: it writes similar problems for the hard ones and
harder ones for the easy ones, solves each new problem several times (programs run in the
sandbox), keeps those whose answers agree, labels them with the equation search, and a second
call asks the server for nothing."""

from __future__ import annotations

import json
import re

import pytest

from distill.config import PipelineConfig
from distill.equations import parse, value_of
from distill.generate.testing import TeacherServer
from distill.quantities import parse_number
from distill.records import make_problem

pytestmark = pytest.mark.ray

SOURCES = ["Tom has 3 apples and buys 4 more. How many apples does he have?",
           "Ann has 9 pens and gets 5 more. How many pens does she have?",
           "A box holds 12 pens. How many pens are in 25 boxes?"]


def responder(endpoint: str, body: dict) -> str:
    """Writing (the fdd_* system prompt): a new problem of two numbers from the request's seed;
    the similar ones add, the harder one also gives some away. Solving (pot): a program that
    adds the problem's two first numbers -- and, for the harder problems, a different answer
    per sample (no agreement)."""
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    if "creative math teacher" in system:
        a, b = 2 + body["seed"] % 89, 2 + body["seed"] // 89 % 89
        if "harder" in " ".join(m["content"] for m in body["messages"]):
            return f"New problem: Kim has {a} cards, finds {b} more and gives 1 away. How many cards are left?"
        return f"New problem: Kim has {a} marbles and finds {b} more. How many marbles does Kim have?"
    a, b = (int(n) for n in re.findall(r"\d+", user.rsplit("Problem:", 1)[1])[:2])
    noise = body["seed"] % 1000 if "gives 1 away" in user else 0
    return f"```python\nans = {a} + {b} + {noise}\n```"


def test_an_llm_teacher_writes_labels_and_keeps_what_agrees(ray_local, tmp_path) -> None:
    from distill.fdd.stage import llm_new_problems

    problems = [make_problem(dataset="t", split="train", source_id=i, question=q, answer="0")
                for i, q in enumerate(SOURCES)]
    hard = {problems[0]["id"], problems[1]["id"]}
    with TeacherServer(responder) as srv:
        pipeline = PipelineConfig.model_validate({
            "name": "fdd_llm", "teacher": "search",
            "train": {"target": "equation_prefix"},
            "search": {"max_ops": 2},
            "fdd": {"rounds": 1, "variants": 2, "teacher": "llm", "llm": {
                "harder": 1, "label_samples": 3, "min_agreement": 0.6,
                "generate": {"engine": "openai", "model": "teacher-7b",
                             "openai": {"base_url": srv.url, "backoff_s": 0.05}}}}})
        new, rejected = llm_new_problems(1, problems, hard, set(), pipeline=pipeline,
                                         out=tmp_path / "teacher", log=lambda s: None)
        asked = len(srv.requests)
        # written: 2 similar per hard problem, 1 harder for the easy one; each solved 3 times
        assert asked == (2 * 2 + 1) * 4
        again = llm_new_problems(1, problems, hard, set(), pipeline=pipeline,
                                 out=tmp_path / "teacher", log=lambda s: None)
        assert len(srv.requests) == asked  # everything was committed: nothing asked again
    assert again == (new, rejected)
    assert rejected == {"too_little_agreement": 1}  # the harder problem's answers disagree
    assert sorted(json.loads(p["meta"])["source_id"] for p in new) == sorted(
        [problems[0]["id"]] * 2 + [problems[1]["id"]] * 2)
    for p in new:
        a, b = (parse_number(q) for q in p["quantities"])
        assert parse_number(p["answer"]) == a + b  # the agreed answer, from the question
        values = {f"N{i}": parse_number(q) for i, q in enumerate(p["quantities"])}
        assert value_of(parse(p["fdd_label"]), values) == a + b  # the search's equation
        assert json.loads(p["meta"])["label_rule"].startswith(
            "teacher self-consistency: 3 of 3 solutions give")
    summary = json.loads((tmp_path / "teacher" / "summary.json").read_text())
    assert {k: summary[k] for k in ("written", "new", "agreed", "kept")} == {
        "written": 5, "new": 5, "agreed": 4, "kept": 4}
    assert summary["fdd_similar"]["correct"] == 4 and summary["fdd_harder"]["correct"] == 1
