"""distill.generate.verify: verdicts (correct / wrong / error / unparsable) and reasons for every output
kind -- final answers, programs run in the real sandbox (hostile ones included), equations
(parse, quantities and constants, solution), new FDD problems -- as tables."""

from __future__ import annotations

import os
import uuid

import pytest

from distill.records import make_problem
from distill.sandbox import SandboxConfig, SandboxPool
from distill.generate import GenerateConfig
from distill.generate.parsers import parse_program
from distill.generate.verify import NO_GOLD, verify, verify_many

JANET = make_problem(
    dataset="gsm8k", split="test", source_id=0,
    question="Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and "
    "bakes muffins for her friends every day with four. She sells the remainder at the farmers' "
    "market daily for $2 per fresh duck egg. How much in dollars does she make every day at the "
    "farmers' market?", answer="18")
PERCENT = make_problem(dataset="t", split="test", source_id=1,
                       question="A class had 700 students; 70 more joined. By what percent did "
                       "it grow?", answer="10%")
NO_ANSWER = {**JANET, "id": "gen/1", "answer": None, "answer_raw": None}
SUBTRACT = make_problem(dataset="singleeq", split="test", source_id=2,
                        question="Tom had 70 marbles and lost some. Now he has 27. How many did "
                        "he lose?", answer="43")


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(SandboxConfig(timeout_s=1.5, memory_mb=256, workers=1)) as p:
        yield p


# ------------------------------------------------------------------------------- answers
@pytest.mark.parametrize("problem,completion,verdict,predicted,why", [
    (JANET, "16 - 3 - 4 = 9 eggs. 9 * 2 = 18.\nThe answer is: 18", "correct", "18", None),
    (JANET, "The answer is: $18.00", "correct", "18", None),
    (JANET, "16 - 3 = 13. 13 * 2 = 26.\nThe answer is: 26", "wrong", "26", "answer is 18"),
    (JANET, "She makes 9 * 2 = 18 dollars", "correct", "18", None),  # no marker: last number
    (JANET, "The answer is: eighteen", "correct", "18", None),
    (JANET, "The answer is: a lot", "unparsable", "a lot", "not a number"),
    (JANET, "I cannot solve this.", "unparsable", None, "no final answer"),
    (PERCENT, "The answer is: 10%", "correct", "0.1", None),
    (PERCENT, "The answer is: 0.1", "correct", "0.1", None),
    (PERCENT, "The answer is: 12%", "wrong", "0.12", "answer is 0.1"),
    (NO_ANSWER, "The answer is: 18", "error", "18", NO_GOLD),
])
def test_cot_verdicts(problem, completion, verdict, predicted, why):
    v = verify(problem, "cot", completion)
    assert v.verdict == verdict, v.reason
    assert v.predicted == predicted
    assert (v.reason is None) == (why is None)
    if why:
        assert why in v.reason


# ------------------------------------------------------------------------------ programs
PROGRAMS = [
    ("```python\neggs = 16 - 3 - 4\nans = eggs * 2\n```", "correct", "18", None),
    ("```python\ndef solution():\n    return (16 - 3 - 4) * 2\n```", "correct", "18", None),
    ("```python\nprint((16 - 3 - 4) * 2.0)\n```", "correct", "18", None),
    ("```python\nans = 16 * 2\n```", "wrong", "32", "answer is 18"),
    ("```python\nx = 1\n```", "error", None, "no_answer"),
    ("```python\nans = 1 / 0\n```", "error", None, "runtime"),
    ("The answer is 18.", "unparsable", None, "no code block"),
    ("```python\nans = (16 - \n```", "unparsable", None, "does not parse"),
]
HOSTILE = [
    ("while True:\n    pass", "timeout"),
    ("import time\ntime.sleep(30)\nans = 18", "timeout"),
    ("import os\nos.system('touch /tmp/PWNED')\nans = 18", "forbidden"),
    ("ans = len(open('/etc/passwd').read())", "forbidden"),
    ("import socket\nsocket.create_connection(('127.0.0.1', 80))\nans = 18", "forbidden"),
    ("import subprocess\nsubprocess.run(['ls'])\nans = 18", "forbidden"),
    ("__import__('os').fork()\nans = 18", "forbidden"),
    ("x = 'a' * (10 ** 10)\nans = 18", "memory"),
    ("def f(n):\n    return f(n + 1)\nans = f(0)", "runtime"),
]


@pytest.mark.parametrize("completion,verdict,predicted,why", PROGRAMS)
def test_pot_verdicts(pool, completion, verdict, predicted, why):
    v = verify(JANET, "pot", completion, run_programs=pool.run_many)
    assert v.verdict == verdict, v.reason
    assert v.predicted == predicted
    if why:
        assert why in v.reason


def test_hostile_programs_are_errors_in_one_batch(pool):
    """The programs of a batch go to the sandbox in one call; hostile ones are errors that name
    the limit or layer that stopped them, and leave the host untouched."""
    marker = f"/tmp/PWNED-{uuid.uuid4().hex}"
    hostile = [(code.replace("/tmp/PWNED", marker), kind) for code, kind in HOSTILE]
    parsed = [parse_program(f"```python\n{code}\n```") for code, _ in hostile]
    parsed.append(parse_program("```python\nans = (16 - 3 - 4) * 2\n```"))
    calls = []

    def run(codes):
        calls.append(len(codes))
        return pool.run_many(codes)

    out = verify_many([JANET] * len(parsed), parsed, "pot", run_programs=run)
    assert calls == [len(parsed)]
    for (code, kind), v in zip(hostile, out):
        assert v.verdict == "error", (code, v.reason)
        assert f"({kind})" in v.reason, (code, v.reason)
    assert out[-1].verdict == "correct"
    assert not os.path.exists(marker)


def test_os_layers_hold_without_the_ast_check(tmp_path):
    marker = tmp_path / "pwned"
    with SandboxPool(SandboxConfig(timeout_s=2, workers=1, ast_check=False, light_workers=False)) as p:
        v = verify(JANET, "pot", f"```python\nimport os\nos.system('touch {marker}')\nans = 18\n```",
                   run_programs=p.run_many)
    assert v.verdict in ("error", "correct")  # os.system fails inside; the program may still set ans
    assert not marker.exists()


# ------------------------------------------------------------------------------ equations
@pytest.mark.parametrize("strategy,problem,completion,verdict,predicted,why", [
    ("fltt_equation", JANET, "Equation: x=(16-3-4)*2", "correct", "18", None),
    ("fltt_equation", JANET, "x = (16 - 3 - 4) * 2.", "correct", "18", None),
    ("fltt_equation", JANET, "x=16*2-3", "wrong", "29", "answer is 18"),
    ("fltt_equation", JANET, "x=(16-3-4)*2+0.5-0.5", "wrong", "18", "neither quantities"),
    ("fltt_equation", JANET, "x=(N0-N1-N2)*N3", "wrong", None, "placeholders"),
    ("fltt_equation", JANET, "x=18/0", "wrong", None, "cannot be solved"),
    ("fltt_equation", JANET, "x = 16 - 3 - 4 eggs", "unparsable", None, "does not parse"),
    ("fltt_equation", JANET, "", "unparsable", None, "empty"),
    ("fltt_equation", SUBTRACT, "70-x=27", "correct", "43", None),
    ("fltt_equation", SUBTRACT, "x=70-27+100-100", "correct", "43", None),  # 100 is a constant
    ("fltt_masked_equation", JANET, "Equation: x=(N0-N1-N2)*N3", "correct", "18", None),
    ("fltt_masked_equation", JANET, "x=(N0-N1-N2)*2", "correct", "18", None),
    ("fltt_masked_equation", JANET, "x=(N0-N1-N2)*N7", "wrong", None, "N7 but the problem has 4"),
    ("fltt_masked_equation", JANET, "x=(16-3-4)*2", "wrong", "18", "neither quantities"),
    ("fltt_masked_equation", JANET, "x=N0*N3", "wrong", "32", "answer is 18"),
    ("fltt_masked_equation", NO_ANSWER, "x=(N0-N1-N2)*N3", "error", "18", NO_GOLD),
])
def test_equation_verdicts(strategy, problem, completion, verdict, predicted, why):
    v = verify(problem, strategy, completion)
    assert v.verdict == verdict, v.reason
    assert v.predicted == predicted
    if why:
        assert why in v.reason
    else:
        assert v.reason is None


def test_format_fixed_equation_is_verified_after_the_fix():
    calls = [{"step": "equation", "completion": "x = (16 - 3 - 4) * 2 dollars"},
             {"step": "format_fix", "completion": "Equation: x=(16-3-4)*2"}]
    v = verify(JANET, "fltt_equation", calls)
    assert v.verdict == "correct" and v.parsed.info["format_fixed"]
    off = GenerateConfig(model="m", engine="hf", strategy="fltt_equation", format_fix=False)
    assert verify(JANET, "fltt_equation", calls[:1], config=off).verdict == "unparsable"


# ---------------------------------------------------------------------------- FDD problems
@pytest.mark.parametrize("completion,verdict,why", [
    ("New problem: Janet's hens lay 20 eggs a day. She eats 2 and sells the rest for $3 each. "
     "How much does she earn in a week?", "correct", None),
    ("New problem: " + JANET["question"], "wrong", "repeats"),
    ("New problem: Janet likes ducks. How many ducks does she like?", "wrong", "no numbers"),
    ("New problem: Janet has 4 ducks and 3 hens.", "wrong", "asks no question"),
    ("I'd rather not.", "wrong", "no numbers"),
    ("", "unparsable", "no new problem"),
])
def test_new_problem_verdicts(completion, verdict, why):
    v = verify(JANET, "fdd_harder", completion)
    assert v.verdict == verdict, v.reason
    assert v.predicted is None
    if why:
        assert why in v.reason
    else:
        assert v.parsed.question.startswith("Janet's hens")


def test_kpdd_pot_keeps_key_points(pool):
    calls = [{"step": "core_question", "completion": "How much does Janet make every day?"},
             {"step": "information", "completion": "1. 16 eggs a day.\n2. Eats 3, bakes with 4.\n3. $2 per egg."},
             {"step": "solve", "completion": "```python\nans = (16 - 3 - 4) * 2\n```"}]
    v = verify(JANET, "kpdd_pot", calls, run_programs=pool.run_many)
    assert v.verdict == "correct"
    assert v.parsed.key_points.startswith("Core question: How much does Janet make every day?\n"
                                          "Problem-solving information:\n1. 16 eggs")
