"""distill.grading: the answer-equivalence table (every dataset's answer styles, equal and not
equal), the numeric core, thread safety and the math-verify time limit."""

from __future__ import annotations

import threading
import time
from fractions import Fraction as F

import pytest

import distill.grading as grading
from distill.grading import ABS_TOL, Grade, answers_match, grade, grade_equation, values_match
from distill.quantities import parse_answer

T, N = True, False

# (predicted, gold, equal, the rule that decided)
CASES = [
    # GSM8K
    ("1234", "#### 1,234", T, "exact"),
    ("1,234", "#### 1234", T, "exact"),
    ("#### 72", "72", T, "exact"),
    ("72.0", "#### 72", T, "exact"),
    ("$1,234.50", "1234.5", T, "exact"),
    ("The answer is 18.", "#### 18", T, "exact"),
    ("18 dollars", "18", T, "exact"),
    ("$18", "18", T, "exact"),
    ("1235", "#### 1,234", N, "numeric"),
    ("-18", "#### 18", N, "numeric"),
    ("18", "-18", N, "numeric"),
    # MAWPS / SVAMP floats
    ("504", 504.0, T, "exact"),
    (504.0, "504", T, "exact"),
    ("51", 51.0, T, "exact"),
    (51, "51.0", T, "exact"),
    (F(51), 51.0, T, "exact"),
    ("-6", -6.0, T, "exact"),
    ("0.6667", 0.6667, T, "exact"),
    ("2/3", 0.6667, T, "tolerance"),
    ("5/6", 0.8333333333333334, T, "tolerance"),
    ("6", -6.0, N, "numeric"),
    ("0.67", 0.6667, N, "numeric"),
    ("50", 51.0, N, "numeric"),
    (52.0, 51.0, N, "numeric"),
    # Math23K
    ("4/7", "((4)/(7))", T, "exact"),
    (F(4, 7), "((4)/(7))", T, "exact"),
    ("0.5714", "((4)/(7))", T, "tolerance"),
    ("0.571", "((4)/(7))", N, "numeric"),
    ("23/3", "7((2)/(3))", T, "exact"),
    ("7 2/3", "7((2)/(3))", T, "exact"),
    ("7.6667", "7((2)/(3))", T, "tolerance"),
    ("14/3", "7((2)/(3))", N, "numeric"),
    ("10%", "10%", T, "exact"),
    ("0.1", "10%", T, "exact"),
    ("1/10", "10%", T, "exact"),
    ("10", "10%", T, "percent"),
    ("10%", 0.1, T, "exact"),
    ("10%", "10", T, "percent"),
    ("12.5%", "0.125", T, "exact"),
    ("1000", "10%", N, "numeric"),
    ("0.01", "10%", N, "numeric"),
    ("0.666666666667", "2/3", T, "tolerance"),
    ("2/3", "0.666666666667", T, "tolerance"),
    ("0.666666666667", "((2)/(3))", T, "tolerance"),
    ("14.4", "14.4", T, "exact"),
    ("144", "14.4", N, "numeric"),
    ("-2.5", "-2.5", T, "exact"),
    # ASDiv
    ("9", "9 (apples)", T, "exact"),
    ("9 apples", "9 (apples)", T, "exact"),
    ("8", "9 (apples)", N, "numeric"),
    ("5 (cm)", "5 cm", T, "exact"),
    ("15 r8", "15 r8", T, "text"),
    ("15 R 8", "15 r8", T, "text"),
    ("15", "15 r8", N, "unparsable"),
    ("15 r7", "15 r8", N, "text"),
    ("3:30 pm", "3:30 p.m.", T, "text"),
    ("3:30 PM", "3:30 p.m.", T, "text"),
    ("4:30 p.m.", "3:30 p.m.", N, "text"),
    ("Yes", "yes", T, "text"),
    ("yes.", "Yes", T, "text"),
    ("no", "yes", N, "text"),
    ("John", "john", T, "text"),
    ("Mary", "John", N, "text"),
    # MATH-500 LaTeX
    (r"\frac{\pi}{2}", r"\frac{\pi}{2}", T, "text"),
    (r"\pi/2", r"\frac{\pi}{2}", T, "latex"),
    ("pi/2", r"\frac{\pi}{2}", T, "latex"),
    (r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2", T, "latex"),
    (r"\frac{1}{\sqrt{2}}", r"\frac{\sqrt{2}}{2}", T, "latex"),
    (r"(3, \frac{\pi}{2})", r"\left( 3, \frac{\pi}{2} \right)", T, "text"),
    (r"(3, \frac{\pi}{3})", r"\left( 3, \frac{\pi}{2} \right)", N, "latex"),
    (r"[2, 5)", r"[2,5)", T, "text"),
    (r"(2, 5]", r"[2,5)", N, "text"),
    (r"(-\infty, 3]", r"(-\infty,3]", T, "text"),
    (r"(-\infty, 3)", r"(-\infty,3]", N, "latex"),
    (r"\frac{1}{2}", "0.5", T, "exact"),
    (r"\boxed{12}", "12", T, "exact"),
    (r"\dfrac{3}{4}", "0.75", T, "exact"),
    (r"12^\circ", "12", T, "exact"),
    (r"2\sqrt{3}", r"\sqrt{12}", T, "latex"),
    (r"\sqrt{3}", r"\sqrt{2}", N, "latex"),
    (r"\frac{\pi}{3}", r"\frac{\pi}{2}", N, "latex"),
    ("x^2+1", "1+x^2", T, "latex"),
    (r"(x-1)(x+1)", r"x^2-1", T, "latex"),
    (r"\text{(C)}", "C", T, "latex"),
    (r"\text{(B)}", "C", N, "latex"),
    # near misses and boundaries (rel_tol 1e-4, inclusive, exact arithmetic)
    ("0.10002", "0.1", N, "numeric"),
    ("0.10001", "0.1", T, "tolerance"),
    ("1.0001", "1", T, "tolerance"),
    ("1.00011", "1", N, "numeric"),
    ("0.9999", "1", T, "tolerance"),
    ("0.99989", "1", N, "numeric"),
    ("0.3333", "1/3", T, "tolerance"),
    ("0.33", "1/3", N, "numeric"),
    ("100", "1000", N, "numeric"),
    ("1000", "100", N, "numeric"),
    ("-5", "5", N, "numeric"),
    ("5", "-5", N, "numeric"),
    ("1009899", "1010000", N, "numeric"),
    ("123456790", "123456789", N, "numeric"),
    ("0", "0.0", T, "exact"),
    ("1e-12", "0", T, "tolerance"),
    ("0.001", "0", N, "numeric"),
    # nothing to compare
    ("", "5", N, "unparsable"),
    (None, "5", N, "unparsable"),
    ("no idea", "5", N, "unparsable"),
    ("5", "", N, "unparsable"),
    (float("nan"), "5", N, "unparsable"),
    (float("inf"), "5", N, "unparsable"),
    # more that must not match
    ("7", "7((2)/(3))", N, "numeric"),
    ("2/7", "((4)/(7))", N, "numeric"),
    ("20%", "10%", N, "numeric"),
    ("5.0", "#### 50", N, "numeric"),
    ("0.5", r"\frac{1}{3}", N, "numeric"),
    ("2", "1 1/2", N, "numeric"),
    ("22.83", 36.78, N, "numeric"),
    ("0.25", 0.24916666666666668, N, "numeric"),
    ("13", "13.5", N, "numeric"),
    ("-15", "15", N, "numeric"),
    # a percentage read as its bare number, both ways
    ("100", "100%", T, "percent"),
    ("1", "100%", T, "exact"),
]


def _id(case) -> str:
    return f"{case[0]!r}~{case[1]!r}"[:60]


@pytest.mark.parametrize("predicted,gold,equal,method", CASES, ids=[_id(c) for c in CASES])
def test_grade_table(predicted, gold, equal: bool, method: str) -> None:
    assert grade(predicted, gold) == Grade(equal, method)
    assert answers_match(predicted, gold) is equal


def test_table_is_balanced() -> None:
    equal = sum(1 for c in CASES if c[2])
    assert len(CASES) >= 80 and 0.35 <= equal / len(CASES) <= 0.65


def test_parsed_answers_are_accepted() -> None:
    assert grade(parse_answer("9 (apples)"), parse_answer("9")) == Grade(True, "exact")
    assert answers_match(parse_answer("((4)/(7))"), F(4, 7))


def test_values_match_core() -> None:
    assert values_match(F(1), F(1))
    assert values_match(F(1), F("1.0001")) and values_match(F("1.0001"), F(1))  # inclusive
    assert not values_match(F(1), F("1.00011"))
    assert values_match(F(10000), F(10001, 1)) is False  # two integers: no tolerance
    assert values_match(F(10000), F("10000.5"))
    assert values_match(F(0), ABS_TOL) and not values_match(F(0), 2 * ABS_TOL)
    assert values_match(F(1), F("1.01"), rel_tol=0.02) and not values_match(F(1), F("1.01"))
    assert grade("1.01", "1", rel_tol=0.02) == Grade(True, "tolerance")


def test_grade_equation() -> None:
    assert grade_equation("x=56*9", 504.0) == Grade(True, "exact")
    assert grade_equation("70-x=27", "43") == Grade(True, "exact")
    assert grade_equation("x=(4)/(7)", "((4)/(7))").equal
    assert grade_equation("x=0.6667*0.5", "1/3").method == "tolerance"
    assert grade_equation("(6.0+x)*(x-6.0)=189.0", -15.0).equal  # either root of a quadratic
    assert grade_equation("x=N0+N1", "5", bindings={"N0": F(2), "N1": F(3)}).equal
    assert grade_equation("x=34*4", 134.0) == Grade(False, "numeric")
    assert grade_equation("X=0.32=0.21", "0.53") == Grade(False, "unparsable")


def test_numeric_path_never_starts_the_worker() -> None:
    grading._WORKER.shutdown()
    for predicted, gold, _, method in CASES:
        if method in ("exact", "tolerance", "percent", "numeric", "text", "unparsable"):
            grade(predicted, gold)
    assert grading._WORKER._proc is None


def test_grading_from_a_non_main_thread() -> None:
    """math-verify's own signal.alarm timeouts would raise here; the worker process does not."""
    results: list[Grade] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(grade(r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}"))
            results.append(grade(r"\frac{\pi}{3}", r"\frac{\pi}{2}"))
            results.append(grade("#### 1,234", "1234"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert results.count(Grade(True, "latex")) == 3
    assert results.count(Grade(False, "latex")) == 3
    assert results.count(Grade(True, "exact")) == 3


def test_pathological_latex_times_out_and_the_worker_recovers() -> None:
    start = time.perf_counter()
    # sympy tries to evaluate 2^-(10^10^10): minutes without a limit
    assert grade(r"\frac{1}{2}^{10^{10^{10}}}", "0", latex_timeout_s=1.0) == Grade(False, "timeout")
    assert time.perf_counter() - start < 10
    assert grade(r"\pi/2", r"\frac{\pi}{2}") == Grade(True, "latex")  # a fresh worker


def _slow_check(pred: str, gold: str) -> bool:
    time.sleep(30)
    return True


def _failing_check(pred: str, gold: str) -> bool:
    raise RuntimeError("checker broke")


def test_slow_or_failing_checker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grading, "_LATEX_CHECK", _slow_check)
    start = time.perf_counter()
    assert grade(r"\sqrt{2}", r"\sqrt{3}", latex_timeout_s=0.5) == Grade(False, "timeout")
    assert time.perf_counter() - start < 10
    monkeypatch.setattr(grading, "_LATEX_CHECK", _failing_check)
    assert grade(r"\sqrt{2}", r"\sqrt{3}") == Grade(False, "error")
    monkeypatch.undo()
    assert grade(r"\sqrt{4}", "2") == Grade(True, "latex")
