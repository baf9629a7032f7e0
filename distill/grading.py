"""Answer equivalence: the one function that decides whether two answers agree.

Takes a predicted and a gold answer (``str``, ``int``, ``float``, ``Fraction`` or a
:class:`~distill.quantities.ParsedAnswer`) and gives a :class:`Grade` -- ``equal`` plus the rule
that decided. Both sides are read by :func:`distill.quantities.parse_answer` (so ``#### 1,234``,
``9 (apples)``, ``$18``, ``18 dollars``, ``((4)/(7))``, ``7((2)/(3))``, ``10%`` and
``\\frac{1}{2}`` are numbers), then, in order:

1. both numeric -> exact rational comparison (``exact``), then the relative tolerance
   (``tolerance``, see :func:`values_match`), then the percent readings (``percent``: a side
   written with ``%`` may also be read as its bare number, so gold ``10%`` matches ``0.1``,
   ``1/10``, ``10%`` and ``10``, and gold ``0.1`` matches ``10%``); otherwise not equal
   (``numeric``);
2. normalised text equal (``text``): case, spacing, trailing punctuation and the dots of
   abbreviations are ignored, so ``Yes`` = ``yes.`` and ``3:30 p.m.`` = ``3:30 pm``;
3. either side looks like LaTeX / symbolic maths (a backslash, ``^``, ``{``, ``pi``, ``sqrt``,
   ``π``, ``√``, ``∞``) -> math-verify decides (``latex``), with a time limit (``timeout``);
4. otherwise not equal: ``text`` when neither side is a number, ``unparsable`` when only one
   is (or a side is empty).

math-verify's own timeouts use ``signal.alarm``, which fails outside the main thread (Ray
workers, Serve replicas), so they are disabled and the time limit is enforced by running the
check in one long-lived worker process, killed and restarted when a check overruns.
The numeric path never starts that process. Calls from several threads share the worker one at
a time (the time limit counts from the moment a call reaches the worker). POSIX only.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import pickle
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping

from distill import framing
from distill.equations import EquationError, solve_all
from distill.quantities import ParsedAnswer, parse_answer

__all__ = [
    "Grade",
    "grade",
    "answers_match",
    "values_match",
    "grade_equation",
    "ABS_TOL",
    "DEFAULT_REL_TOL",
]

DEFAULT_REL_TOL = 1e-4
ABS_TOL = Fraction(1, 10**9)
"""Absolute floor of the tolerance: two values closer than this match whatever their size, so
that 0 matches a program's ``1e-12``. Relative tolerance alone can never match anything to 0."""

_STARTUP_TIMEOUT_S = 120.0  # spawning the worker and importing math-verify (seconds, not 5)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grade:
    """``equal`` and the rule that decided: ``exact`` | ``tolerance`` | ``percent`` | ``text`` |
    ``latex`` when equal; ``numeric`` | ``text`` | ``latex`` | ``unparsable`` | ``timeout`` |
    ``error`` when not."""

    equal: bool
    method: str


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------

_TOL_CACHE: dict[float, Fraction] = {}


def _tol(rel_tol: float) -> Fraction:
    t = _TOL_CACHE.get(rel_tol)
    if t is None:
        t = _TOL_CACHE[rel_tol] = Fraction(repr(float(rel_tol)))  # 1e-4 is exactly 1/10000
    return t


def values_match(a: Fraction, b: Fraction, rel_tol: float = DEFAULT_REL_TOL) -> bool:
    """Whether two exact values agree: equal, or ``|a - b| <= rel_tol * max(|a|, |b|)``
    (inclusive, computed exactly, so 1 and 1.0001 match at 1e-4 and 1 and 1.00011 do not), or
    ``|a - b| <= ABS_TOL`` (1e-9) near zero.

    Two integers match only when equal: the tolerance absorbs the rounding of decimals
    (``0.6667`` for 2/3, ``23.998`` for 24) and integers are not rounded, so 1009899 is not
    1010000 even though they differ by exactly 1e-4 relative."""
    if a == b:
        return True
    if a.denominator == 1 and b.denominator == 1:
        return False
    diff = abs(a - b)
    if diff <= ABS_TOL:
        return True
    return diff <= _tol(rel_tol) * max(abs(a), abs(b))


def _grade_numbers(p: ParsedAnswer, g: ParsedAnswer, rel_tol: float) -> Grade:
    a, b = p.value, g.value
    if a == b:
        return Grade(True, "exact" if p.exact and g.exact else "tolerance")
    if values_match(a, b, rel_tol):
        return Grade(True, "tolerance")
    # a percentage may also be read as its bare number: gold "10%" vs "10", gold 10 vs "10%"
    if g.percent and values_match(a, b * 100, rel_tol):
        return Grade(True, "percent")
    if p.percent and values_match(a * 100, b, rel_tol):
        return Grade(True, "percent")
    return Grade(False, "numeric")


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------

_ABBREV_DOT = re.compile(r"(?<=[^\W\d_])\.(?=[^\W\d_]|\s|$)")
_SPACE = re.compile(r"\s+")
_QUOTES = "\"'`“”‘’「」"


def _norm_text(p: ParsedAnswer) -> str:
    s = (p.text or p.original or "").casefold().strip().strip(_QUOTES)
    s = _ABBREV_DOT.sub("", s)  # p.m. -> pm, u.s.a. -> usa
    s = s.rstrip(".。．!！;；,，").strip()
    return _SPACE.sub("", s)


# --------------------------------------------------------------------------------------------
# LaTeX / symbolic answers through math-verify, in a worker process
# --------------------------------------------------------------------------------------------

_SYMBOLIC = re.compile(r"\\|\^|\{|(?<![A-Za-z])(?:pi|sqrt)(?![A-Za-z])|[π√∞]")
_BARE_PI = re.compile(r"(?<![\\A-Za-z])pi(?![A-Za-z])")
_BARE_SQRT = re.compile(r"(?<![\\A-Za-z])sqrt(?![A-Za-z])")


def _looks_symbolic(s: str) -> bool:
    return bool(_SYMBOLIC.search(s))


def _latex_input(s: str) -> str:
    """Math-verify extracts LaTeX only between delimiters; wrap a bare answer in ``$...$``."""
    s = s.strip()
    if "####" in s:
        s = s[s.rfind("####") + 4 :].strip()
    s = _BARE_PI.sub(r"\\pi", s.replace("π", r"\pi"))
    s = _BARE_SQRT.sub(r"\\sqrt", s.replace("√", r"\sqrt"))
    s = s.replace("∞", r"\infty")
    if "$" in s or "\\boxed" in s or "\\(" in s or "\\[" in s:
        return s
    return f"${s}$"


def _math_verify_equal(pred: str, gold: str) -> bool | None:
    """Runs in the worker: True/False, or None when math-verify cannot read a side."""
    from math_verify import parse, verify

    g = parse(gold, parsing_timeout=None)
    p = parse(pred, parsing_timeout=None)
    if not g or not p:
        return None
    return bool(verify(g, p, timeout_seconds=None))


# Pickles in distill.framing frames, both ways (trusted: both ends are ours); no size cap.


def _write_frame(fd: int, obj: Any) -> None:
    framing.write_frame(fd, pickle.dumps(obj))


def _read_frame(fd: int, deadline: float | None) -> Any:
    try:
        data = framing.read_frame(fd, deadline, max_size=None)
    except EOFError:
        raise EOFError("the grading worker exited") from None
    return pickle.loads(data)


def _worker_main(read_fd: int, write_fd: int) -> None:
    """The worker's loop: (function, args) in, ("ok", result) or ("error", message) out."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout is disabled" notices
    while True:
        try:
            fn, args = _read_frame(read_fd, None)
        except EOFError:
            return  # the parent closed the pipe or died
        try:
            reply = ("ok", fn(*args))
        except Exception as exc:  # noqa: BLE001 - reported to the caller, the worker lives on
            reply = ("error", f"{type(exc).__name__}: {exc}")
        _write_frame(write_fd, reply)


def _warm_up() -> bool:
    import math_verify  # noqa: F401

    return True


class _Worker:
    """One lazily started worker process, killed and replaced when a call overruns.

    A plain ``python -c`` subprocess talking pickles over two pipes, rather than a
    ``multiprocessing`` pool: ``spawn`` re-imports the caller's ``__main__`` in the child (an
    unguarded script would run again) and ``fork`` is unsafe in threaded processes (Ray)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._fds: tuple[int, int] = (-1, -1)  # (read from worker, write to worker)
        self._pid = 0  # the process that started the worker (a fork must not reuse it)

    def _start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + [env.get("PYTHONPATH", "")])
        code = "import sys; from distill.grading import _worker_main; _worker_main(int(sys.argv[1]), int(sys.argv[2]))"
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", code, str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
                close_fds=True,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._proc, self._fds, self._pid = proc, (from_child_r, to_child_w), os.getpid()
        try:
            self._roundtrip(_warm_up, (), _STARTUP_TIMEOUT_S)
        except BaseException:
            self._stop()
            raise

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        for fd in self._fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fds = (-1, -1)
        if proc is not None and self._pid == os.getpid():
            proc.kill()
            proc.wait()

    def _roundtrip(self, fn, args: tuple, timeout: float) -> Any:
        read_fd, write_fd = self._fds
        _write_frame(write_fd, (fn, args))
        status, value = _read_frame(read_fd, time.monotonic() + timeout)
        if status == "error":
            raise RuntimeError(value)
        return value

    def call(self, fn, *args: Any, timeout: float) -> Any:
        """``fn(*args)`` in the worker (``fn`` must be importable by name there); raises
        TimeoutError after ``timeout`` seconds and RuntimeError when ``fn`` raised."""
        with self._lock:
            if self._proc is not None and (self._pid != os.getpid() or self._proc.poll() is not None):
                self._stop()
            if self._proc is None:
                self._start()
            try:
                return self._roundtrip(fn, args, timeout)
            except RuntimeError:
                raise  # fn raised; the worker is fine
            except BaseException:  # timeout, dead worker, interrupted: start afresh next time
                self._stop()
                raise

    def shutdown(self) -> None:
        with self._lock:
            self._stop()


_WORKER = _Worker()
atexit.register(_WORKER.shutdown)
_LATEX_CHECK = _math_verify_equal  # module-level so tests can swap in a slow checker


def _grade_latex(pred: str, gold: str, timeout_s: float) -> Grade:
    try:
        same = _WORKER.call(_LATEX_CHECK, _latex_input(pred), _latex_input(gold), timeout=timeout_s)
    except TimeoutError:
        log.warning("math-verify timed out after %.1f s on %r vs %r", timeout_s, pred, gold)
        return Grade(False, "timeout")
    except Exception as exc:  # noqa: BLE001 - a crashed or unstartable checker is a non-match
        log.warning("math-verify failed on %r vs %r: %s", pred, gold, exc)
        return Grade(False, "error")
    if same is None:
        return Grade(False, "unparsable")
    return Grade(same, "latex")


# --------------------------------------------------------------------------------------------
# The public entry points
# --------------------------------------------------------------------------------------------


def _as_parsed(x: Any) -> ParsedAnswer:
    if isinstance(x, ParsedAnswer):
        return x
    if isinstance(x, float) and not math.isfinite(x):
        return ParsedAnswer(repr(x), None, False, False, None, "")
    return parse_answer(x)


def grade(
    predicted: Any,
    gold: Any,
    *,
    rel_tol: float = DEFAULT_REL_TOL,
    latex_timeout_s: float = 5.0,
) -> Grade:
    """Whether ``predicted`` agrees with ``gold``, and by which rule (see the module docstring).
    Never raises on odd inputs: what cannot be read is ``unparsable``."""
    p, g = _as_parsed(predicted), _as_parsed(gold)
    if p.value is not None and g.value is not None:
        return _grade_numbers(p, g, rel_tol)
    tp, tg = _norm_text(p), _norm_text(g)
    if not tp or not tg:
        return Grade(False, "unparsable")
    if tp == tg:
        return Grade(True, "text")
    if _looks_symbolic(p.original) or _looks_symbolic(g.original):
        return _grade_latex(p.original, g.original, latex_timeout_s)
    if p.value is None and g.value is None:
        return Grade(False, "text")
    return Grade(False, "unparsable")


def answers_match(predicted: Any, gold: Any, **kw: Any) -> bool:
    """``grade(predicted, gold, **kw).equal``."""
    return grade(predicted, gold, **kw).equal


def grade_equation(
    equation: str,
    gold: Any,
    *,
    bindings: Mapping[str, Fraction] | None = None,
    rel_tol: float = DEFAULT_REL_TOL,
) -> Grade:
    """Whether ``equation`` (``x=56*9``, ``70-x=27``, ``x+(1/x)=3.3333``), solved for its one
    unknown, gives ``gold``. An equation with several real solutions agrees when one of them
    does (the quadratic ``(6+x)*(x-6)=189`` agrees with -15 and with 15). An equation that
    cannot be parsed or solved is ``unparsable``."""
    try:
        roots = solve_all(equation, bindings=bindings)
    except EquationError:
        return Grade(False, "unparsable")
    g = _as_parsed(gold)
    result = Grade(False, "numeric")
    for r in roots:
        result = grade(r, g, rel_tol=rel_tol)
        if result.equal:
            return result
    return result
