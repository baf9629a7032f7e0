"""ExecResult, and the trusted side of answer reading.

The sandboxed child only reports ``(vtype, vtext)`` strings (see ``_worker.describe_value``) or
its stdout; turning them into an answer happens here, in the host, through
:mod:`distill.quantities` (``parse_answer``, ``extract_quantities``, ``canonical``) -- so a program
cannot smuggle a non-canonical answer past the parser, and number reading lives in one place.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from distill.quantities import (
    QuantityTooLarge,
    canonical,
    decimal_fraction,
    extract_quantities,
    parse_answer,
)

__all__ = ["ERROR_KINDS", "ExecResult", "answer_from_stdout", "answer_from_value"]

#: Every value ``ExecResult.error`` can take (None when the program gave an answer).
ERROR_KINDS = ("timeout", "memory", "forbidden", "syntax", "runtime", "no_answer", "output_limit")

_INT = re.compile(r"-?\d+")
_FRACTION = re.compile(r"(-?\d+)/(\d+)")
_PRINTED_LINES = 20  # how far back from the end of stdout a printed number is looked for
_LINE_CHARS = 2000
_SURROGATES = re.compile("[\ud800-\udfff]")


def _text(s: str) -> str:
    """Text that encodes as UTF-8: a program may print lone surrogates; they become U+FFFD."""
    return s if s.isascii() else _SURROGATES.sub("\ufffd", s)


@dataclass(frozen=True)
class ExecResult:
    """What running one program gave.

    ``ok`` is True exactly when ``answer`` is set (then ``error`` is None). ``answer`` is the
    canonical string of :func:`distill.quantities.canonical` (``18``, ``-3``, ``14.4``, ``4/7``).
    ``error`` is one of :data:`ERROR_KINDS`; ``detail`` says more (the exception, the limit).
    ``source`` names where the answer came from: ``ans``, ``answer``, ``result``,
    ``solution()`` or ``printed``. ``stdout`` is capped at the configured ``stdout_limit``.
    """

    ok: bool
    answer: str | None
    error: str | None
    stdout: str
    duration_s: float
    detail: str | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def failure(cls, error: str, detail: str | None, duration_s: float = 0.0,
                stdout: str = "", source: str | None = None) -> ExecResult:
        assert error in ERROR_KINDS, error
        return cls(False, None, error, stdout, duration_s, detail, source)


def answer_from_value(vtype: str, vtext: str) -> tuple[str | None, str | None]:
    """(canonical answer, None) or (None, why) for a value the child described.

    Raises :class:`~distill.quantities.QuantityTooLarge` for a value beyond the bounds numbers
    are read within (a decimal beyond ``1e+-400``, more than 4,300 digits): the caller reports
    it as ``output_limit``. The caller also bounds ``vtext``'s length (``max_answer_chars``)."""
    if not isinstance(vtext, str):
        return None, "malformed answer"
    value: Fraction | None = None
    if vtype == "int" and _INT.fullmatch(vtext):
        value = Fraction(int(vtext))
    elif vtype == "fraction" and (m := _FRACTION.fullmatch(vtext)) and int(m.group(2)) != 0:
        value = Fraction(int(m.group(1)), int(m.group(2)))
    elif vtype == "float":
        try:
            f = float(vtext)
        except ValueError:
            return None, "malformed float"
        if not math.isfinite(f):
            return None, f"answer {vtext} is not a finite number"
        value = parse_answer(f).value
    elif vtype == "decimal":
        try:
            d = Decimal(vtext)
        except InvalidOperation:
            return None, "malformed decimal"
        if not d.is_finite():
            return None, f"answer {vtext} is not a finite number"
        value = decimal_fraction(d)
    elif vtype == "str":
        value = parse_answer(vtext).value
    if value is None:
        shown = _text(vtext if len(vtext) <= 60 else vtext[:57] + "...")
        return None, f"answer {shown!r} is not a number"
    return canonical(value), None


def answer_from_stdout(stdout: str) -> str | None:
    """The last number printed, read as an answer: the last line holding a number is read whole
    by ``parse_answer`` (``The answer is 5.``, ``x = 2/3``, ``$1,234``), else its last quantity
    by ``extract_quantities`` (``total: 12 apples and 3 pears`` -> 3)."""
    lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
    for line in reversed(lines[-_PRINTED_LINES:]):
        line = line[-_LINE_CHARS:]
        parsed = parse_answer(line)
        if parsed.value is not None:
            return canonical(parsed.value)
        qs = extract_quantities(line)
        if qs:
            value = parse_answer(qs[-1].text).value
            return canonical(value if value is not None else qs[-1].value)
    return None


def build_result(reply: dict[str, Any], stdout_limit: int,
                 max_answer_chars: int = 4096) -> ExecResult:
    """An ExecResult from a worker's reply (validated: the reply comes from sandboxed code).

    Bounds are enforced here, on the host, whatever the worker sent: stdout to
    ``stdout_limit`` characters, an answer text longer than ``max_answer_chars`` or a value
    beyond the bounds of :mod:`distill.quantities` is ``output_limit`` (never parsed), and
    text fields are valid UTF-8 (lone surrogates become U+FFFD)."""
    duration = reply.get("duration_s")
    duration = float(duration) if isinstance(duration, (int, float)) else 0.0
    stdout = reply.get("stdout")
    stdout = _text(stdout[:stdout_limit]) if isinstance(stdout, str) else ""
    detail = reply.get("detail")
    detail = _text(detail[:1000]) if isinstance(detail, str) else None
    source = reply.get("source")
    source = _text(source[:32]) if isinstance(source, str) else None
    kind = reply.get("kind")
    if kind is not None:
        if kind not in ERROR_KINDS:
            kind, detail = "runtime", f"unknown error kind {str(kind)[:40]!r}"
        return ExecResult.failure(kind, detail, duration, stdout, source)
    vtype = reply.get("vtype")
    if vtype is not None:
        vtext = reply.get("vtext")
        if isinstance(vtext, str) and len(vtext) > max_answer_chars:
            return ExecResult.failure(
                "output_limit", f"{source}: answer of {len(vtext)} characters (limit "
                f"{max_answer_chars})", duration, stdout, source)
        try:
            answer, why = answer_from_value(str(vtype)[:16], vtext)
        except QuantityTooLarge as e:
            return ExecResult.failure("output_limit", f"{source}: answer too large: {e}",
                                      duration, stdout, source)
        if answer is None:
            return ExecResult.failure("no_answer", f"{source}: {why}", duration, stdout, source)
        return ExecResult(True, answer, None, stdout, duration, None, source)
    try:
        answer = answer_from_stdout(stdout)
    except QuantityTooLarge as e:
        return ExecResult.failure("output_limit", f"printed answer too large: {e}", duration,
                                  stdout, "printed")
    if answer is None:
        return ExecResult.failure(
            "no_answer", "no ans/answer/result variable, no solution() value and no number printed",
            duration, stdout, None,
        )
    return ExecResult(True, answer, None, stdout, duration, None, "printed")
