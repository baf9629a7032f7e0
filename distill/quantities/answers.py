"""ANSWER values: a published answer read as a number, a numeric literal, the canonical string.

The reader is whoever compares, stores or writes answers and constants (grading, loaders,
teachers' parsers, the sandbox, configs' allowed constants). Contract: :func:`parse_answer`
takes an answer in any published form (a GSM8K solution, ``10%``, ``((4)/(7))``, ``$1,234.50``,
``\\boxed{12}``, a float, ...) and never raises -- a non-number has ``value=None`` and a
normalised ``text``; :func:`parse_number` reads one literal exactly or gives None;
:func:`canonical` writes a value as the one string every stage stores (``18``, ``14.4``,
``4/7``), with ``parse_number(canonical(v)) == v``. Values are exact
(:class:`fractions.Fraction`, no float on the way; a float *input* is read through its
``repr``), within the bounds :data:`MAX_EXPONENT` and :data:`MAX_DIGITS`, beyond which
:class:`QuantityTooLarge` is raised (:func:`canonical`, :func:`decimal_fraction`) or the literal
is not a number. Numbers in question text are :mod:`distill.quantities.text`'s.

Every form read is listed at :func:`parse_answer`. A decimal with six or more fractional
digits that lies within half a unit of its last digit of a fraction with denominator <= 1000
is read as that fraction with ``exact=False`` (``0.666666666667`` -> 2/3); so is a float that is the nearest float to such a
fraction (``0.3333333333333333``).
"""

from __future__ import annotations

import math
import re
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from distill.quantities._numbers import _VULGAR, _W_CARD, _card_value, _zh_int, normalize_text

__all__ = [
    "ParsedAnswer",
    "parse_answer",
    "parse_number",
    "canonical",
    "canonical_answer_text",
    "decimal_fraction",
    "boxed_content",
    "numeric_texts",
    "MAX_EXPONENT",
    "MAX_DIGITS",
    "QuantityTooLarge",
]

#: Largest power of ten a number may carry (``1e400``, ``3 x 10^-400``): beyond it a literal is
#: not read as a number, and :func:`decimal_fraction` refuses it (turning ``1e999999999`` into a
#: Fraction would compute a billion-digit power).
MAX_EXPONENT = 400
#: Most digits :func:`canonical` writes for a numerator, denominator or decimal expansion
#: (Python's own int-to-text limit): a larger value raises :class:`QuantityTooLarge`.
MAX_DIGITS = 4300


class QuantityTooLarge(ValueError):
    """A value beyond the bounds numbers are read and written within (:data:`MAX_EXPONENT`,
    :data:`MAX_DIGITS`); the message says which bound and by how much."""


@dataclass(frozen=True)
class ParsedAnswer:
    """A published answer read as a number when it is one (see :func:`parse_answer`)."""

    original: str
    value: Fraction | None
    exact: bool
    percent: bool
    unit: str | None
    text: str

# --------------------------------------------------------------------------------------------
# Numeric literals and answers
# --------------------------------------------------------------------------------------------

_DEC_LIT = re.compile(
    r"(?P<sign>[+-])?(?P<int>\d{1,3}(?:,\d{3})+|\d*)(?:\.(?P<frac>\d*))?(?:[eE](?P<exp>[+-]?\d+))?"
)
_TIMES_TEN = re.compile(r"^(.+?)\s*(?:\*|x|×|\\times|\\cdot)\s*10\s*\^\s*\{?\s*([+-]?\d+)\s*\}?$")
_MIXED_SPACE = re.compile(r"^([+-]?)(\d+)(?:\s+|\s*又\s*|\s+and\s+)(\d+\s*/\s*\d+)$")
_MIXED_PAREN = re.compile(r"^([+-]?)(\d+)\s*(\(.*\))$")
_PCT_SUFFIX = re.compile(r"\s*(?:%|\\%|percent|per\s+cent|pct)$", re.IGNORECASE)


def _decimal(s: str) -> Fraction | None:
    m = _DEC_LIT.fullmatch(s)
    if not m:
        return None
    ip, fp, exp = m.group("int"), m.group("frac"), m.group("exp")
    if not ip and not fp:
        return None
    digits = ip.replace(",", "") + (fp or "")
    val = Fraction(int(digits or "0"), 10 ** len(fp or ""))
    if exp:
        e = int(exp)
        if abs(e) > MAX_EXPONENT:
            return None
        val *= Fraction(10) ** e
    return -val if m.group("sign") == "-" else val


def _unwrap(s: str) -> str:
    """Strip whitespace and parentheses that enclose the whole string: "((4))" -> "4".

    A layer ``s[l] ... s[r]`` is stripped unless a closing bracket inside it (before ``r``)
    brings the depth back to the level before ``l`` (``(1)/(2)`` keeps its brackets). One pass
    records, per depth, where closing brackets bring it there; each layer is then one binary
    search: O(n log n) in all, not O(n) per layer (an answer of 4,000 nested parentheses)."""
    s = s.strip()
    if len(s) < 2 or s[0] not in "({[" or s[-1] not in ")}]":
        return s
    closes: dict[int, list[int]] = {}  # depth after a closing bracket -> its positions
    depth = 0
    for i, ch in enumerate(s):
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
            closes.setdefault(depth, []).append(i)
    lo, hi, base = 0, len(s) - 1, 0  # the current string is s[lo:hi + 1]; base: depth before lo
    while hi - lo >= 1 and s[lo] in "({[" and s[hi] in ")}]":
        at = closes.get(base, ())
        j = bisect_left(at, lo)
        if j < len(at) and at[j] < hi:
            break
        lo, hi, base = lo + 1, hi - 1, base + 1
        while lo <= hi and s[lo].isspace():
            lo += 1
        while hi >= lo and s[hi].isspace():
            hi -= 1
    return s[lo:hi + 1]


def _split_top(s: str, sep: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _literal(s: str, depth: int = 0) -> Fraction | None:
    """A plain numeric literal (no percent, no unit): decimals, fractions, mixed numbers."""
    if depth > 6:
        return None
    s = _unwrap(s)
    if not s:
        return None
    v = _decimal(s)
    if v is not None:
        return v
    if s[0] in "+-" and len(s) > 1 and s[1] in "(":
        inner = _literal(s[1:], depth + 1)
        return None if inner is None else (-inner if s[0] == "-" else inner)
    if s[-1] in _VULGAR:
        head = s[:-1].strip()
        if not head:
            return _VULGAR[s[-1]]
        i = _decimal(head)
        if i is not None and i.denominator == 1:
            return -(abs(i) + _VULGAR[s[-1]]) if head.startswith("-") else i + _VULGAR[s[-1]]
        return None
    m = _MIXED_SPACE.match(s)
    if m:
        frac = _literal(m.group(3), depth + 1)
        if frac is None or frac >= 1:
            return None
        v = int(m.group(2)) + frac
        return -v if m.group(1) == "-" else v
    m = _MIXED_PAREN.match(s)
    if m and "/" in m.group(3):
        frac = _literal(m.group(3), depth + 1)
        if frac is not None and 0 <= frac < 1:
            v = int(m.group(2)) + frac
            return -v if m.group(1) == "-" else v
        return None
    parts = _split_top(s, "/")
    if len(parts) == 2:
        a, b = _literal(parts[0], depth + 1), _literal(parts[1], depth + 1)
        if a is None or not b:
            return None
        return a / b
    m = _TIMES_TEN.match(s)
    if m:
        a = _literal(m.group(1), depth + 1)
        e = int(m.group(2))
        if a is None or abs(e) > MAX_EXPONENT:
            return None
        return a * Fraction(10) ** e
    return None


_LATEX_FRAC = re.compile(r"\\[dtc]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_LATEX_FRAC_SHORT = re.compile(r"\\[dtc]?frac\s*(\d)\s*(\d)")
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox|textit|mathbf|operatorname)\s*\{([^{}]*)\}")
_LATEX_SPACES = re.compile(r"\\[,;:! ]|\\quad|\\qquad|\\displaystyle|\\left|\\right|~")
_DEGREE = re.compile(r"\s*(?:\^\s*\{?\s*\\circ\s*\}?|°|\\degree)")


def boxed_content(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (braces balanced), or None
    when there is none or it is not closed."""
    i = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if i < 0:
        return None
    j = text.find("{", i)
    if j < 0:
        return None
    depth = 0
    for k in range(j, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return text[j + 1 : k]
    return None


def _strip_boxed(s: str) -> str:
    """The content of the last ``\\boxed{...}`` / ``\\fbox{...}``; an unclosed one gives the
    rest of the text after its brace."""
    inner = boxed_content(s)
    if inner is not None:
        return inner
    i = max(s.rfind("\\boxed"), s.rfind("\\fbox"))
    j = s.find("{", i) if i >= 0 else -1
    return s if j < 0 else s[j + 1 :]


def numeric_texts(values: list) -> list[str]:
    """``values`` as strings, each checked to be a number :func:`parse_number` reads (allowed
    constants in configs); raises ValueError naming the ones that are not."""
    bad = [v for v in values if parse_number(str(v)) is None]
    if bad:
        raise ValueError(f"not numbers: {bad}")
    return [str(v) for v in values]


def _strip_latex(s: str) -> tuple[str, str | None]:
    """Plain-number LaTeX as plain text; returns (text, unit from \\text{} or a degree sign)."""
    unit = None
    if "\\boxed" in s or "\\fbox" in s:
        s = _strip_boxed(s)
    s = s.strip()
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$" and s.count("$") in (2, 4):
        s = s.strip("$").strip()
    for a, b in (("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(a) and s.endswith(b):
            s = s[len(a) : -len(b)].strip()
    if _DEGREE.search(s):
        s = _DEGREE.sub("", s)
        unit = "°"
    texts = _LATEX_TEXT.findall(s)
    if texts:
        s = _LATEX_TEXT.sub(lambda m: " " + m.group(1) + " ", s)
    s = _LATEX_SPACES.sub("", s).replace("{,}", "").replace("\\%", "%").replace("\\$", "$")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    for _ in range(3):
        if "frac" not in s:
            break
        s = _LATEX_FRAC.sub(r"((\1)/(\2))", s)
        s = _LATEX_FRAC_SHORT.sub(r"((\1)/(\2))", s)
    if s.startswith("{") and s.endswith("}"):
        s = _unwrap(s)
    return s.strip(), unit


_CURRENCY_PREFIX = re.compile(r"^(?:\$|US\$|USD|¥|￥|€|£|Rs\.?|₹|RMB)\s*", re.IGNORECASE)
_VAR_PREFIX = re.compile(r"^(?:[a-zA-Z]\s*=|=)\s*")
_ANSWER_PREFIX = re.compile(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*", re.IGNORECASE)
_LEADING_NUM = re.compile(
    r"^[+-]?(?:\d+\s*\(\s*\(?\s*\d+\s*\)?\s*/\s*\(?\s*\d+\s*\)?\s*\)"  # 7((2)/(3)), 7(2/3)
    r"|\(+\s*[+-]?\d+(?:\.\d+)?\s*\)?\s*/\s*\(?\s*\d+(?:\.\d+)?\s*\)+"  # ((4)/(7)), (4/7)
    r"|\d+\s+\d+\s*/\s*\d+(?![\d.])"  # 2 1/2
    r"|(?:\d{1,3}(?:,\d{3})+|\d*)\.?\d+(?:[eE][+-]?\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?"
    r"[½⅓⅔¼¾⅕⅖⅗⅘⅙⅚⅛⅜⅝⅞]?"
    r"|[½⅓⅔¼¾⅕⅖⅗⅘⅙⅚⅛⅜⅝⅞])"
    r"(?:\s*(?:%|percent\b|per\s+cent\b|pct\b))?",
    re.IGNORECASE,
)
_UNIT_OK = re.compile(r"^[^\d=+*/^\\<>]*$")
_WS = re.compile(r"\s+")
_TRAIL_PUNCT = ".。．!！;；,，"


def _percent_split(s: str) -> tuple[str, bool]:
    m = _PCT_SUFFIX.search(s)
    if m:
        return s[: m.start()].strip(), True
    if s.startswith("百分之"):
        return s[3:], True
    return s, False


def _number_in_words(s: str) -> Fraction | None:
    low = s.strip().lower()
    if not low:
        return None
    if _CARD_FULL.fullmatch(low):
        v = _card_value(low)
        return None if v is None else Fraction(v)
    v = _zh_int(s.strip())
    return None if v is None else Fraction(v)


_CARD_FULL = re.compile(_W_CARD, re.IGNORECASE)


def _value_and_percent(s: str) -> tuple[Fraction | None, bool]:
    body, pct = _percent_split(s)
    v = _literal(body)
    if v is None:
        v = _number_in_words(body)
    if v is None:
        return None, False
    return (v / 100 if pct else v), pct


def parse_number(s: str) -> Fraction | None:
    """One numeric literal in any published form (``1,234``, ``-3.5``, ``1e3``, ``10%``,
    ``4/7``, ``((4)/(7))``, ``7((2)/(3))``, ``2 1/2``, ``\\frac{1}{2}``, ``½``, full width,
    ``twenty-five``, ``三十``), exactly as written; None when the whole string is not one."""
    if isinstance(s, bool) or s is None:
        return None
    if isinstance(s, Fraction):
        return s
    if isinstance(s, int):
        return Fraction(s)
    if isinstance(s, float):
        return Fraction(repr(s)) if math.isfinite(s) else None
    if not isinstance(s, str):
        return None
    t = normalize_text(s).strip()
    if not t:
        return None
    if "\\" in t or "$" in t or "{" in t:
        t, _ = _strip_latex(t)
        if "\\" in t:
            return None
    return _value_and_percent(t)[0]


def _recover(value: Fraction, frac_digits: int) -> Fraction | None:
    """A fraction with denominator <= 1000 within half a unit of the last printed digit."""
    if frac_digits < 6 or value.denominator <= 1000:
        return None
    q = value.limit_denominator(1000)
    if q != value and abs(q - value) <= Fraction(1, 2 * 10**frac_digits):
        return q
    return None


_FRAC_DIGITS = re.compile(r"\.(\d+)(?:[eE][+-]?\d+)?\s*%?$")


def _clean_text(s: str) -> str:
    """Whitespace collapsed, trailing sentence punctuation dropped, lower case."""
    s = _WS.sub(" ", s).strip()
    while s and s[-1] in _TRAIL_PUNCT:
        s = s[:-1].rstrip()
    return s.lower()


def parse_answer(raw: str | int | float | Fraction | None) -> ParsedAnswer:
    """A published answer in any form, read without raising.

    ``#### 1,234`` (or a whole GSM8K solution: the text after the last ``####``), ``10%``,
    ``((4)/(7))``, ``7((2)/(3))``, ``2 1/2``, ``9 (apples)``, ``$1,234.50``, ``3.5 cm``,
    ``1e3``, ``\\boxed{12}``, ``\\frac{1}{2}``, ``12^\\circ``, ints, floats (through ``repr``)
    and Fractions. A decimal with >= 6 fractional digits (or a float) that is the rounding of
    a fraction with denominator <= 1000 is read as that fraction with ``exact=False``.
    Anything else (``yes``, ``3:30 p.m.``, ``15 r8``, ``\\sqrt{2}``) has ``value=None`` and a
    normalised ``text``.
    """
    try:
        return _parse_answer(raw)
    except Exception:  # noqa: BLE001 - the contract is "never raise"; a bad input is not a number
        original = raw if isinstance(raw, str) else ("" if raw is None else _safe_repr(raw))
        return ParsedAnswer(original, None, False, False, None, _clean_text(str(original)))


def _safe_repr(raw: object) -> str:
    try:
        return repr(raw) if isinstance(raw, float) else str(raw)
    except Exception:  # noqa: BLE001
        return ""


def _parse_answer(raw: object) -> ParsedAnswer:
    if raw is None:
        return ParsedAnswer("", None, False, False, None, "")
    if isinstance(raw, bool):
        return ParsedAnswer(str(raw), None, False, False, None, str(raw).lower())
    if isinstance(raw, Fraction):
        return ParsedAnswer(str(raw), raw, True, False, None, canonical(raw))
    if isinstance(raw, int):
        return ParsedAnswer(str(raw), Fraction(raw), True, False, None, str(raw))
    if isinstance(raw, float):
        r = repr(raw)
        if not math.isfinite(raw):
            return ParsedAnswer(r, None, False, False, None, r)
        v = Fraction(r)
        if v.denominator <= 1000:
            return ParsedAnswer(r, v, True, False, None, r)
        q = Fraction(raw).limit_denominator(1000)
        if float(q) == raw:
            return ParsedAnswer(r, q, False, False, None, r)
        return ParsedAnswer(r, v, True, False, None, r)
    original = raw if isinstance(raw, str) else _safe_repr(raw)
    s = normalize_text(unicodedata.normalize("NFC", original)).strip()
    if "####" in s:
        s = s[s.rfind("####") + 4 :].strip()
    unit: str | None = None
    if "\\" in s or "$" in s or "{" in s:
        s, unit = _strip_latex(s)
    s = _ANSWER_PREFIX.sub("", s)
    s = _VAR_PREFIX.sub("", s).strip()
    m = _CURRENCY_PREFIX.match(s)
    if m and len(s) > m.end() and (s[m.end()].isdigit() or s[m.end()] in ".-"):
        unit = unit or m.group().strip()
        s = s[m.end() :].strip()
    while s and s[-1] in _TRAIL_PUNCT and not (s[-1] == "." and len(s) > 1 and s[-2] == "."):
        s = s[:-1].rstrip()
    text = _clean_text(s)
    if not s or "\\" in s:
        return ParsedAnswer(original, None, False, False, unit, text)

    value, pct = _value_and_percent(s)
    num_text = s
    if value is None:
        m = _LEADING_NUM.match(s)
        if m and m.end() < len(s):
            rest = s[m.end() :].strip()
            rest_clean = rest.strip("()（）[] .,。")
            if rest_clean and _UNIT_OK.match(rest_clean) and not rest.startswith((":", "：")):
                value, pct = _value_and_percent(m.group().strip())
                if value is not None:
                    unit = rest_clean
                    num_text = m.group().strip()
    if value is None:
        return ParsedAnswer(original, None, False, False, unit, text)
    exact = True
    m = _FRAC_DIGITS.search(num_text)
    if m and "/" not in num_text:
        body, _ = _percent_split(num_text)
        literal = _literal(body)
        if literal is not None:
            q = _recover(literal, len(m.group(1)))
            if q is not None:
                value, exact = (q / 100 if pct else q), False
    return ParsedAnswer(original, value, exact, pct, unit, _clean_text(num_text))


def decimal_fraction(d: Decimal) -> Fraction:
    """A finite Decimal as an exact Fraction, within bounds: raises :class:`QuantityTooLarge`
    when its power of ten is beyond +-:data:`MAX_EXPONENT` or it has more than
    :data:`MAX_DIGITS` digits (checked before any arithmetic), ValueError when it is not
    finite."""
    if not d.is_finite():
        raise ValueError(f"{d} is not a finite number")
    sign, digits, exp = d.as_tuple()
    if len(digits) > MAX_DIGITS:
        raise QuantityTooLarge(f"a decimal of {len(digits)} digits (limit {MAX_DIGITS})")
    if d and abs(d.adjusted()) > MAX_EXPONENT:
        raise QuantityTooLarge(f"a decimal of magnitude 1e{d.adjusted()} (limit "
                               f"1e+-{MAX_EXPONENT})")
    if not d:
        return Fraction(0)
    if exp < -MAX_EXPONENT - MAX_DIGITS:
        raise QuantityTooLarge(f"a decimal with exponent {exp}")
    return Fraction(d)


def _text(n: int, what: str) -> str:
    if n.bit_length() > MAX_DIGITS * 3.33:  # more than MAX_DIGITS digits, before str() fails
        raise QuantityTooLarge(f"{what} of about {int(n.bit_length() * 0.30103)} digits "
                               f"(limit {MAX_DIGITS})")
    try:
        return str(n)
    except ValueError as e:  # a lower int-to-text limit set by the process
        raise QuantityTooLarge(f"{what}: {e}") from None


def canonical(value: Fraction) -> str:
    """The exact canonical string of a value: ``18``, ``-3``, ``14.4``, ``0.125``, ``4/7``.

    Terminating decimals are written as decimals (computed exactly, never via float);
    anything else as ``p/q``. ``parse_number(canonical(v)) == v`` for every Fraction.
    Raises :class:`QuantityTooLarge` (a ValueError) when a numerator, denominator or decimal
    expansion would need more than :data:`MAX_DIGITS` digits (``Fraction(1, 2**13000)``).
    """
    v = value if isinstance(value, Fraction) else Fraction(value)
    p, q = v.numerator, v.denominator
    if q == 1:
        return _text(p, "an integer")
    a = b = 0
    d = q
    while d % 2 == 0:
        d //= 2
        a += 1
    while d % 5 == 0:
        d //= 5
        b += 1
    if d != 1:
        return f"{_text(p, 'a numerator')}/{_text(q, 'a denominator')}"
    k = max(a, b)
    if k > MAX_DIGITS:
        raise QuantityTooLarge(f"a decimal expansion of {k} fractional digits (limit {MAX_DIGITS})")
    scaled = abs(p) * (10**k // q)
    digits = _text(scaled, "a decimal expansion").rjust(k + 1, "0")
    body = f"{digits[:-k]}.{digits[-k:]}".rstrip("0")
    return ("-" if p < 0 else "") + body


def canonical_answer_text(text: str) -> str:
    """A predicted answer as reports and the API write it: :func:`canonical` when the text
    reads as a number (``"18.0"`` -> ``18``, ``"1/2"`` -> ``0.5``), else the text stripped."""
    value = parse_answer(text).value
    return canonical(value) if value is not None else text.strip()
