"""Equations and arithmetic expressions: the one place that parses, evaluates and solves them.

Takes equation / expression text as datasets and teachers write it (``x=(11-1)*2``,
``X=(27.0*16.0)``, ``(7.0*x)+4.0=(3.0*x)-20.0``, ``x=200*(1+(1/5))``, ``N0 * (N1 + N2)``) and
gives an immutable AST, its exact value (``fractions.Fraction``; :data:`BINARY_OPS` is what
each operator does, for every evaluator of expression trees), the solution of an equation for
its one unknown, canonical infix / prefix text and Python source (:func:`to_python`), the
numeric literals it uses, and its readings over a problem's placeholders
(:func:`placeholder_readings`: ``x=3*4`` with quantities 3, 4 is ``x=N0*N1``).

Grammar (a hand-written tokenizer and recursive-descent parser; no ``eval``, no sympy)::

    equation := expr '=' expr
    expr     := term (('+' | '-') term)*
    term     := unary (('*' | '/') unary | <implicit> power)*
    unary    := ('-' | '+') unary | power
    power    := postfix (('^' | '**') unary)?          right-associative: 2^3^2 = 2^(3^2)
    postfix  := atom '%'*                              (e)% = e / 100
    atom     := number | placeholder | variable | '(' expr ')'    also [ ] { } and （ ）

* Numbers: ``12``, ``3.5``, ``.5``, ``1,200`` (thousands separators), ``25%`` (= 1/4, one
  literal). A parenthesised integer-over-integer group ``(1/3)`` or ``((1)/(3))`` is ONE
  literal (Math23K writes fractions that way in texts and equations); ``1/3`` without the
  parentheses is a division. A minus directly before a number is part of the literal
  (``1.477/-7.0`` uses ``Num(-7)``), except before ``^`` (``-2^2`` is ``-(2^2)``); ``-(3)``
  stays a negation, so every tree prints and parses back to itself.
* ``N0``, ``N1``, ... are placeholders (masked quantities); any other identifier (``x``, ``X``,
  ``hours``) is a variable. ``×`` ``·`` ``÷`` ``−`` and full-width characters (``（３＋４）``,
  through :func:`distill.quantities.normalize_text`) are accepted.
* Implicit multiplication: a number or ``)`` followed by ``(`` or an identifier, and an
  identifier followed by ``(``: ``2(3+4)``, ``3x``, ``(a+b)(a-b)``, ``N0(N1+N2)``; a number and
  an identifier must touch (``5 apples`` is an error, not ``5*apples``). It binds like
  ``*`` (left to right: ``1/2x`` is ``(1/2)*x``). Juxtaposition is always multiplication here:
  the Math23K *answer* convention ``7((2)/(3))`` = 7 2/3 belongs to
  :func:`distill.quantities.parse_answer`, not to equations (no Math23K equation uses it).

Arithmetic is exact. ``a ^ b`` is exact for integer ``b`` (|b| <= 64 and a bounded result size)
and for rational ``b`` when the root is exact (``16^(1/2)`` = 4); any other exponent is computed
in floating point and returned as ``Fraction(float)`` -- the one inexact path of
:func:`evaluate`. Division by zero and every other failure raise :class:`EquationError`.

Solving (:func:`solve_equation`, :func:`solve_all`): ``x = <expr without x>`` is evaluated
directly; otherwise both sides are reduced to exact rational functions of the unknown, so linear
equations (``70-x=27``, ``x/4=3``) and the ``c/x`` kind (``12/x=3``,
``(200/x)-1=200/(10+x)``) are solved exactly; a quadratic with an irrational root gives
``Fraction(float)``; degrees 3..64 go to sympy's real-root isolation (exact when rational);
the rare non-polynomial form (``2^x=8``, ``x^0.5=3``) is solved numerically in floats, in
bounded time. Roots that zero a denominator are dropped.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Collection, Iterator, Mapping, Sequence, Union

from distill.quantities import normalize_text

# Numbers an equation may use without finding them in the problem (FLTT's constants); configs
# override them per run (DataConfig.constants).
DEFAULT_CONSTANTS = ("1", "2", "3.14", "100")

__all__ = [
    "EquationError",
    "Num",
    "Var",
    "Placeholder",
    "Neg",
    "BinOp",
    "Equation",
    "Expr",
    "Literal",
    "parse",
    "parse_expression",
    "parse_equation",
    "parse_prefix",
    "evaluate",
    "apply_op",
    "BINARY_OPS",
    "power",
    "solve_equation",
    "value_of",
    "solve_all",
    "to_infix",
    "to_python",
    "to_prefix",
    "literal_numbers",
    "substitute",
    "operator_count",
    "placeholders",
    "variables",
    "placeholder_readings",
    "UnmappedLiteral",
]

MAX_EXPONENT = 64  # |b| in an exact a ^ b
MAX_POWER_BITS = 4096  # bound on the size of an exact power's numerator / denominator
_MAX_POLY_DEGREE = 64  # beyond this an equation is solved numerically


class EquationError(ValueError):
    """The text cannot be parsed, evaluated or solved; the message says why."""


# --------------------------------------------------------------------------------------------
# AST
# --------------------------------------------------------------------------------------------


def _number_text(value: Fraction) -> str:
    """Surface form of a programmatically built literal that the parser reads back as one Num."""
    sign = "-" if value < 0 else ""
    v = abs(value)
    if v.denominator == 1:
        return f"{sign}{v.numerator}"
    d = v.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d == 1:  # a finite decimal
        return sign + _decimal(v)
    return f"({sign}{v.numerator}/{v.denominator})"


def _decimal(v: Fraction) -> str:
    n, d = v.numerator, v.denominator
    places = 0
    while d != 1 and places < 400:
        n *= 10
        places += 1
        g = math.gcd(n, d)
        n, d = n // g, d // g
    whole, frac = divmod(n, 10**places)
    return f"{whole}.{frac:0{places}d}"


@dataclass(frozen=True, slots=True)
class Num:
    """A numeric literal. ``text`` is its surface form (``27.0``, ``25%``, ``(1/3)``); nodes
    compare by value, so ``Num(1/4, "25%") == Num(1/4, "0.25")``."""

    value: Fraction
    text: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.value, Fraction):
            object.__setattr__(self, "value", Fraction(self.value))
        if not self.text:
            object.__setattr__(self, "text", _number_text(self.value))


@dataclass(frozen=True, slots=True)
class Var:
    """An unknown or a named quantity (``x``, ``X``, ``hours``)."""

    name: str


@dataclass(frozen=True, slots=True)
class Placeholder:
    """A masked quantity ``N<index>``."""

    index: int

    @property
    def name(self) -> str:
        return f"N{self.index}"


@dataclass(frozen=True, slots=True)
class Neg:
    operand: "Expr"


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # one of + - * / ^
    left: "Expr"
    right: "Expr"


Expr = Union[Num, Var, Placeholder, Neg, BinOp]


@dataclass(frozen=True, slots=True)
class Equation:
    lhs: Expr
    rhs: Expr


@dataclass(frozen=True, slots=True)
class Literal:
    """A numeric literal an equation uses. ``fraction_parts`` is (numerator, denominator) for a
    ``(n/d)`` group, so a coverage check can accept either the fraction or its two parts."""

    value: Fraction
    text: str
    percent: bool
    fraction_parts: tuple[Fraction, Fraction] | None


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

# on top of quantities.normalize_text (full-width ASCII, minus and dash variants)
_OPERATORS = str.maketrans({"×": "*", "·": "*", "⋅": "*", "÷": "/", "，": ",", "．": "."})

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?P<pct>\s*%)?
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<op>\*\*|[-+*/^=%()\[\]{}])
    """,
    re.VERBOSE,
)
_PLACEHOLDER_RE = re.compile(r"N(\d+)\Z")
_CLOSE = {"(": ")", "[": "]", "{": "}"}

# token kinds
_NUM, _NAME, _OP, _END = 0, 1, 2, 3


class _Tok:
    __slots__ = ("kind", "text", "pos", "end", "value", "pct")

    def __init__(self, kind: int, text: str, pos: int, end: int = -1, value=None, pct=False):
        self.kind, self.text, self.pos, self.end, self.value, self.pct = kind, text, pos, end, value, pct


def _literal_value(lit: str) -> Fraction:
    whole, _, frac = lit.partition(".")
    if not frac:
        return Fraction(int(whole))
    return Fraction(int(whole + frac), 10 ** len(frac))  # whole may be "" for ".5"


def _normalize(text: str) -> str:
    return normalize_text(text).translate(_OPERATORS)


def _tokenize(text: str) -> list[_Tok]:
    s = _normalize(text)
    toks: list[_Tok] = []
    pos, n = 0, len(s)
    match = _TOKEN_RE.match
    while pos < n:
        m = match(s, pos)
        if m is None:
            raise EquationError(f"unexpected character {s[pos]!r} at position {pos} in {text!r}")
        kind = m.lastgroup
        if kind == "ws":
            pass
        elif m.group("num") is not None:
            lit = m.group("num").replace(",", "")
            value = _literal_value(lit)
            pct = m.group("pct") is not None
            if pct:
                value /= 100
                lit += "%"
            toks.append(_Tok(_NUM, lit, pos, m.end(), value, pct))
        elif kind == "name":
            toks.append(_Tok(_NAME, m.group(), pos))
        else:
            op = m.group()
            toks.append(_Tok(_OP, "^" if op == "**" else op, pos))
        pos = m.end()
    toks.append(_Tok(_END, "", n))
    return toks


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------


def _is_int_tok(t: _Tok) -> bool:
    return t.kind == _NUM and not t.pct and "." not in t.text


class _Parser:
    __slots__ = ("toks", "i", "src")

    def __init__(self, toks: list[_Tok], src: str) -> None:
        self.toks = toks
        self.i = 0
        self.src = src

    def _err(self, what: str) -> EquationError:
        t = self.toks[self.i]
        where = f"at position {t.pos}" if t.kind != _END else "at end"
        return EquationError(f"{what} {where} in {self.src!r}")

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def expr(self) -> Expr:
        node = self.term()
        while True:
            t = self.toks[self.i]
            if t.kind == _OP and t.text in ("+", "-"):
                self.i += 1
                node = BinOp(t.text, node, self.term())
            else:
                return node

    def term(self) -> Expr:
        node = self.unary()
        while True:
            t = self.toks[self.i]
            if t.kind == _OP and t.text in ("*", "/"):
                self.i += 1
                node = BinOp(t.text, node, self.unary())
            elif self._implicit(t):
                node = BinOp("*", node, self.power())
            else:
                return node

    def _implicit(self, t: _Tok) -> bool:
        """Juxtaposition that means multiplication (see the module docstring)."""
        prev = self.toks[self.i - 1]
        ends_value = prev.kind == _NUM or (prev.kind == _OP and prev.text in (")", "]", "}", "%"))
        if t.kind == _OP and t.text in ("(", "[", "{"):
            return ends_value or prev.kind == _NAME
        if t.kind == _NAME:  # 3x, (a+b)x -- but not "5 apples"
            return ends_value and (prev.kind != _NUM or prev.end == t.pos)
        return False

    def unary(self) -> Expr:
        t = self.toks[self.i]
        if t.kind == _OP and t.text in ("-", "+"):
            self.i += 1
            nxt, after = self.toks[self.i], self.toks[self.i + 1] if self.i + 1 < len(self.toks) else None
            if (
                t.text == "-"
                and nxt.kind == _NUM
                and not (after is not None and after.kind == _OP and after.text == "^")
            ):  # a signed literal: -7.0 (but -2^2 is -(2^2), and -(3) stays a negation)
                self.i += 1
                return Num(-nxt.value, "-" + nxt.text)
            operand = self.unary()
            return operand if t.text == "+" else Neg(operand)
        return self.power()

    def power(self) -> Expr:
        base = self.postfix()
        t = self.toks[self.i]
        if t.kind == _OP and t.text == "^":
            self.i += 1
            return BinOp("^", base, self.unary())
        return base

    def postfix(self) -> Expr:
        node = self.atom()
        while True:
            t = self.toks[self.i]
            if t.kind == _OP and t.text == "%":
                self.i += 1
                node = BinOp("/", node, Num(Fraction(100), "100"))
            else:
                return node

    def atom(self) -> Expr:
        t = self.toks[self.i]
        if t.kind == _NUM:
            self.i += 1
            return Num(t.value, t.text)
        if t.kind == _NAME:
            self.i += 1
            m = _PLACEHOLDER_RE.match(t.text)
            return Placeholder(int(m.group(1))) if m else Var(t.text)
        if t.kind == _OP and t.text in ("(", "[", "{"):
            frac = self._fraction_group()
            if frac is not None:
                return frac
            self.i += 1
            inner = self.expr()
            close = self.toks[self.i]
            if not (close.kind == _OP and close.text == _CLOSE[t.text]):
                raise self._err(f"expected {_CLOSE[t.text]!r}")
            self.i += 1
            return inner
        if t.kind == _END:
            raise self._err("expression ends unexpectedly")
        raise self._err(f"unexpected {t.text!r}")

    def _fraction_group(self) -> Num | None:
        """``(n/d)``, ``((n)/(d))`` or ``(-n/d)`` with integers n, d != 0: one literal."""
        toks, i = self.toks, self.i
        if toks[i].text != "(":
            return None
        shape = "".join(
            t.text if t.kind == _OP else ("#" if _is_int_tok(t) else "?") for t in toks[i : i + 9]
        )
        sign = 1
        if shape.startswith("(#/#)"):
            num, den, width = toks[i + 1], toks[i + 3], 5
        elif shape.startswith("(-#/#)"):
            num, den, width, sign = toks[i + 2], toks[i + 4], 6, -1
        elif shape.startswith("((#)/(#))"):
            num, den, width = toks[i + 2], toks[i + 6], 9
        else:
            return None
        if den.value == 0:
            return None
        self.i = i + width
        n, d = sign * int(num.value), int(den.value)
        return Num(Fraction(n, d), f"({n}/{d})")


def _parse_tokens(toks: list[_Tok], text: str) -> Expr:
    p = _Parser(toks, text)
    node = p.expr()
    if p.peek().kind != _END:
        raise p._err(f"unexpected {p.peek().text!r}")
    return node


def _split_equals(toks: list[_Tok]) -> list[list[_Tok]]:
    parts: list[list[_Tok]] = [[]]
    for t in toks:
        if t.kind == _OP and t.text == "=":
            parts[-1].append(_Tok(_END, "", t.pos))
            parts.append([])
        else:
            parts[-1].append(t)
    return parts


def parse(text: str) -> Expr | Equation:
    """An :class:`Equation` when the text has one ``=``, else an expression."""
    if not isinstance(text, str):
        raise EquationError(f"expected a string, got {type(text).__name__}")
    if not text.strip():
        raise EquationError("empty equation")
    try:
        parts = _split_equals(_tokenize(text))
        if len(parts) > 2:
            raise EquationError(f"several '=' in equation {text!r}")
        if len(parts) == 1:
            return _parse_tokens(parts[0], text)
        return Equation(_parse_tokens(parts[0], text), _parse_tokens(parts[1], text))
    except RecursionError:
        raise EquationError(f"expression nested too deeply: {text[:60]!r}...") from None


def parse_expression(text: str) -> Expr:
    """Parse an expression (no ``=``)."""
    node = parse(text)
    if isinstance(node, Equation):
        raise EquationError(f"'=' in an expression: {text!r}")
    return node


def parse_equation(text: str) -> Equation:
    """Parse ``lhs = rhs`` (exactly one ``=``)."""
    node = parse(text)
    if not isinstance(node, Equation):
        raise EquationError(f"no '=' in equation {text!r}")
    return node


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def _iroot(n: int, k: int) -> int | None:
    """The exact integer k-th root of n >= 0, or None."""
    if n < 2:
        return n
    r = int(round(n ** (1.0 / k))) if n.bit_length() < 1000 else None
    if r is None:
        return None
    for c in (r - 1, r, r + 1):
        if c >= 0 and c**k == n:
            return c
    return None


def power(base: Fraction, exponent: Fraction) -> Fraction:
    """``base ** exponent`` exactly where possible (see the module docstring)."""
    if exponent.denominator == 1:
        e = exponent.numerator
        if abs(e) > MAX_EXPONENT:
            raise EquationError(f"exponent {e} too large (|exponent| <= {MAX_EXPONENT})")
        if base == 0 and e < 0:
            raise EquationError("division by zero (0 to a negative power)")
        size = max(base.numerator.bit_length(), base.denominator.bit_length()) * abs(e)
        if size > MAX_POWER_BITS:
            raise EquationError(f"power too large ({size} bits)")
        return base**e
    if base < 0:
        raise EquationError(f"negative base {base} with non-integer exponent {exponent}")
    q = exponent.denominator
    if q <= MAX_EXPONENT:
        rn, rd = _iroot(base.numerator, q), _iroot(base.denominator, q)
        if rn is not None and rd is not None:
            return power(Fraction(rn, rd), Fraction(exponent.numerator))
    try:
        result = float(base) ** float(exponent)
    except (OverflowError, ZeroDivisionError) as exc:
        raise EquationError(f"cannot compute {base} ^ {exponent}: {exc}") from None
    if not math.isfinite(result):
        raise EquationError(f"{base} ^ {exponent} is not finite")
    return Fraction(result)


def _lookup(name: str, bindings: Mapping[str, Fraction]) -> Fraction:
    try:
        v = bindings[name]
    except KeyError:
        raise EquationError(f"no value for {name!r}") from None
    return v if isinstance(v, Fraction) else Fraction(v)


def _divide(left: Fraction, right: Fraction) -> Fraction:
    if right == 0:
        raise EquationError("division by zero")
    return left / right


# What each binary operator does to exact values: the one definition, used by evaluate() and
# by every fast evaluator of expression trees elsewhere (the equation search).
BINARY_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": _divide, "^": power}


def apply_op(op: str, left: Fraction, right: Fraction) -> Fraction:
    """``left op right`` exactly (``op`` in ``+ - * / ^``); :class:`EquationError` on a division
    by zero or a power out of range."""
    return BINARY_OPS[op](left, right)


def _eval(node: Expr, b: Mapping[str, Fraction]) -> Fraction:
    cls = node.__class__
    if cls is Num:
        return node.value
    if cls is BinOp:
        return BINARY_OPS[node.op](_eval(node.left, b), _eval(node.right, b))
    if cls is Neg:
        return -_eval(node.operand, b)
    if cls is Placeholder or cls is Var:
        return _lookup(node.name, b)
    raise EquationError(f"not an expression node: {node!r}")


def evaluate(expr: Expr | str, bindings: Mapping[str, Fraction] | None = None) -> Fraction:
    """The exact value of an expression; ``bindings`` gives values to variables and placeholders
    (``{"N0": Fraction(3), "x": 2}``). Raises :class:`EquationError` on division by zero, an
    unbound name or an out-of-range power."""
    if isinstance(expr, str):
        expr = parse_expression(expr)
    try:
        return _eval(expr, bindings or {})
    except RecursionError:
        raise EquationError("expression nested too deeply") from None


# --------------------------------------------------------------------------------------------
# Solving
# --------------------------------------------------------------------------------------------

Poly = tuple  # coefficients, lowest degree first, no trailing zeros (() is the zero polynomial)
_ONE: Poly = (Fraction(1),)


class _NotPolynomial(Exception):
    """The equation is not a rational function of the unknown (or too large a one)."""


def _ptrim(p: list) -> Poly:
    while p and p[-1] == 0:
        p.pop()
    return tuple(p)


def _padd(p: Poly, q: Poly, sign: int = 1) -> Poly:
    n = max(len(p), len(q))
    out = [Fraction(0)] * n
    for i, c in enumerate(p):
        out[i] += c
    for i, c in enumerate(q):
        out[i] += sign * c
    return _ptrim(out)


def _pmul(p: Poly, q: Poly) -> Poly:
    if not p or not q:
        return ()
    if len(p) + len(q) - 2 > _MAX_POLY_DEGREE:
        raise _NotPolynomial
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        if a:
            for j, c in enumerate(q):
                out[i + j] += a * c
    return _ptrim(out)


def _pscale(p: Poly, k: Fraction) -> Poly:
    return _ptrim([c * k for c in p]) if k else ()


def _rf(node: Expr, unknown: str, b: Mapping[str, Fraction]) -> tuple[Poly, Poly]:
    """``node`` as an exact rational function num/den of the unknown."""
    cls = node.__class__
    if cls is Num:
        return ((node.value,) if node.value else ()), _ONE
    if cls is Var:
        if node.name == unknown:
            return (Fraction(0), Fraction(1)), _ONE
        v = _lookup(node.name, b)
        return ((v,) if v else ()), _ONE
    if cls is Placeholder:
        v = _lookup(node.name, b)
        return ((v,) if v else ()), _ONE
    if cls is Neg:
        n, d = _rf(node.operand, unknown, b)
        return _pscale(n, Fraction(-1)), d
    n1, d1 = _rf(node.left, unknown, b)
    op = node.op
    if op == "^":
        n2, d2 = _rf(node.right, unknown, b)
        if len(n2) > 1 or len(d2) > 1:
            raise _NotPolynomial  # the unknown in an exponent
        e = (n2[0] if n2 else Fraction(0)) / d2[0]
        if len(n1) <= 1 and len(d1) == 1:  # constant base
            return _const_rf(power((n1[0] if n1 else Fraction(0)) / d1[0], e))
        if e.denominator != 1 or abs(e) > _MAX_POLY_DEGREE:
            raise _NotPolynomial
        k = int(e)
        if k < 0:
            if not n1:
                raise EquationError("division by zero (0 to a negative power)")
            n1, d1, k = d1, n1, -k
        pn, pd = _ONE, _ONE
        for _ in range(k):
            pn, pd = _pmul(pn, n1), _pmul(pd, d1)
        return _normal(pn, pd)
    n2, d2 = _rf(node.right, unknown, b)
    if op == "*":
        return _normal(_pmul(n1, n2), _pmul(d1, d2))
    if op == "/":
        if not n2:
            raise EquationError("division by zero")
        return _normal(_pmul(n1, d2), _pmul(d1, n2))
    sign = 1 if op == "+" else -1
    if d1 == d2:
        return _padd(n1, n2, sign), d1
    return _normal(_padd(_pmul(n1, d2), _pmul(n2, d1), sign), _pmul(d1, d2))


def _const_rf(v: Fraction) -> tuple[Poly, Poly]:
    return ((v,) if v else ()), _ONE


def _normal(n: Poly, d: Poly) -> tuple[Poly, Poly]:
    """Make a constant denominator 1 (keeps coefficients small on the common path)."""
    if len(d) == 1 and d[0] != 1:
        return _pscale(n, 1 / d[0]), _ONE
    return n, d


def _poly_roots(p: Poly) -> list[Fraction]:
    """Real roots of a polynomial of degree >= 1: exact when rational, else Fraction(float)."""
    if len(p) == 2:
        return [-p[0] / p[1]]
    if len(p) == 3:
        c, b, a = p
        disc = b * b - 4 * a * c
        if disc < 0:
            return []
        rn, rd = math.isqrt(disc.numerator), math.isqrt(disc.denominator)
        if rn * rn == disc.numerator and rd * rd == disc.denominator:
            s = Fraction(rn, rd)
            return sorted({(-b - s) / (2 * a), (-b + s) / (2 * a)})
        sq = math.sqrt(float(disc))
        fb, fa, fc = float(b), float(a), float(c)
        q = -0.5 * (fb + math.copysign(sq, fb))  # the numerically stable pair of formulas
        roots = {q / fa}
        if q != 0:
            roots.add(fc / q)
        return sorted(Fraction(r) for r in roots)
    return _sympy_poly_roots(p)


def _sympy_poly_roots(p: Poly) -> list[Fraction]:
    import sympy  # imported here: only degree >= 3 needs it

    x = sympy.Symbol("x")
    poly = sympy.Poly([sympy.Rational(c.numerator, c.denominator) for c in reversed(p)], x)
    return sorted({_sympy_to_fraction(r) for r in poly.real_roots()})


def _sympy_to_fraction(r) -> Fraction:
    if r.is_Rational:
        return Fraction(int(r.p), int(r.q))
    return Fraction(float(r.evalf(30)))


def _feval(node: Expr, b: Mapping[str, float]) -> float:
    cls = node.__class__
    if cls is Num:
        return float(node.value)
    if cls is Var or cls is Placeholder:
        return b[node.name]
    if cls is Neg:
        return -_feval(node.operand, b)
    left, right = _feval(node.left, b), _feval(node.right, b)
    op = node.op
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op == "/":
        return left / right
    r = left**right
    if isinstance(r, complex):
        raise ValueError("complex power")
    return r


def _numeric_roots(eq: Equation, name: str, b: Mapping[str, Fraction]) -> list[Fraction]:
    """Real roots of a non-polynomial equation (``2^x=8``, ``x^0.5=3``) by bracketing sign
    changes of lhs - rhs on a log-spaced grid over +-[1e-6, 1e9] and bisecting. Float
    precision; misses roots of even multiplicity; bounded time."""
    env = {k: float(v) for k, v in b.items()}

    def f(x: float) -> float | None:
        env[name] = x
        try:
            v = _feval(eq.lhs, env) - _feval(eq.rhs, env)
        except (ArithmeticError, ValueError, KeyError):
            return None
        return v if math.isfinite(v) else None

    mags = [10 ** (k / 20) for k in range(-120, 181)]
    grid = [-m for m in reversed(mags)] + [0.0] + mags
    roots: list[float] = []
    prev_x, prev_v = None, None
    for x in grid:
        v = f(x)
        if v == 0:
            roots.append(x)
        elif v is not None and prev_v is not None and prev_v != 0 and (v > 0) != (prev_v > 0):
            lo, hi, flo = prev_x, x, prev_v
            for _ in range(200):
                mid = (lo + hi) / 2
                fm = f(mid)
                if fm is None or mid in (lo, hi):
                    break
                if (fm > 0) == (flo > 0):
                    lo, flo = mid, fm
                else:
                    hi = mid
            r = (lo + hi) / 2
            fr = f(r)
            # a sign change across a pole (1/x) is not a root
            if fr is not None and abs(fr) <= 1e-6 * max(1.0, abs(prev_v), abs(v)):
                roots.append(r)
        prev_x, prev_v = x, v
    return sorted({Fraction(r) for r in roots})


def _occurs(node: Expr, name: str) -> bool:
    return any(isinstance(n, Var) and n.name == name for n in _walk(node))


def _pick_unknown(eq: Equation, unknown: str | None, b: Mapping[str, Fraction]) -> str:
    names = {n.name for side in (eq.lhs, eq.rhs) for n in _walk(side) if isinstance(n, Var)}
    free = sorted(names - set(b))
    if unknown is not None:
        if unknown not in names:
            raise EquationError(f"unknown {unknown!r} does not occur in the equation")
        others = [n for n in free if n != unknown]
        if others:
            raise EquationError(f"several unknowns: {[unknown] + others}")
        return unknown
    if not free:
        raise EquationError("no unknown in the equation")
    if len(free) > 1:
        raise EquationError(f"several unknowns: {free}")
    return free[0]


def _as_equation(eq: Equation | Expr | str) -> Equation:
    if isinstance(eq, str):
        eq = parse(eq)
    if isinstance(eq, Equation):
        return eq
    if any(isinstance(n, Var) for n in _walk(eq)):
        raise EquationError("an expression with a variable is not an equation")
    return Equation(Var("x"), eq)  # a bare expression reads as x = expr


def solve_all(
    equation: Equation | Expr | str,
    unknown: str | None = None,
    bindings: Mapping[str, Fraction] | None = None,
) -> tuple[Fraction, ...]:
    """Every real solution of ``equation`` for its one unknown, ascending and distinct.

    A bare expression without variables (``(76.0-25.0)``) reads as ``x = expression``.
    ``unknown`` defaults to the only variable not in ``bindings``. Raises
    :class:`EquationError` when the text does not parse, there is no unknown or several, or no
    real solution exists (including ``x = x + 1`` and identities like ``x = x``)."""
    b = bindings or {}
    try:
        eq = _as_equation(equation)
        name = _pick_unknown(eq, unknown, b)
        lhs, rhs = eq.lhs, eq.rhs
        # x = <expression without x>: the common explicit form
        if isinstance(lhs, Var) and lhs.name == name and not _occurs(rhs, name):
            return (_eval(rhs, b),)
        if isinstance(rhs, Var) and rhs.name == name and not _occurs(lhs, name):
            return (_eval(lhs, b),)
        try:
            n1, d1 = _rf(lhs, name, b)
            n2, d2 = _rf(rhs, name, b)
            num = _padd(_pmul(n1, d2), _pmul(n2, d1), -1)
            if len(num) <= 1:
                raise EquationError(
                    "the equation holds for every value" if not num else "the equation has no solution"
                )
            roots = _poly_roots(num)
        except _NotPolynomial:
            roots = _numeric_roots(eq, name, b)
    except RecursionError:
        raise EquationError("expression nested too deeply") from None
    valid = []
    for r in roots:  # drop roots that make a denominator vanish (x/(x-3) = 3/(x-3))
        env = dict(b)
        env[name] = r
        try:
            _eval(lhs, env)
            _eval(rhs, env)
        except EquationError:
            continue
        valid.append(r)
    if not valid:
        raise EquationError(f"no real solution for {name}")
    return tuple(valid)


def solve_equation(
    equation: Equation | Expr | str,
    unknown: str | None = None,
    bindings: Mapping[str, Fraction] | None = None,
) -> Fraction:
    """The solution of ``equation`` for its one unknown (see :func:`solve_all`). When there are
    several real solutions the only positive one is returned; if several are positive (or none
    is), :class:`EquationError` lists them -- use :func:`solve_all` to see every root."""
    roots = solve_all(equation, unknown, bindings)
    if len(roots) == 1:
        return roots[0]
    positive = [r for r in roots if r > 0]
    if len(positive) == 1:
        return positive[0]
    raise EquationError(f"ambiguous: several solutions {[str(r) for r in roots]}")


def value_of(tree: Expr | Equation, bindings: Mapping[str, Fraction] | None = None) -> Fraction:
    """An expression evaluated, or an equation solved for its one unknown, over ``bindings``
    (:func:`evaluate` / :func:`solve_equation`; raises :class:`EquationError`)."""
    if isinstance(tree, Equation):
        return solve_equation(tree, bindings=bindings)
    return evaluate(tree, bindings)


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "^": 4}
_UNARY_PREC = 3
_ATOM_PREC = 5


def _prec(node: Expr) -> int:
    if isinstance(node, BinOp):
        return _PREC[node.op]
    if isinstance(node, Neg) or (isinstance(node, Num) and node.text.startswith("-")):
        return _UNARY_PREC
    return _ATOM_PREC


_INT_TEXT = re.compile(r"-?\d+\Z")


def _wrap(node: Expr, s: str, py: bool = False) -> str:
    # "(3 / 12)" would read back as the literal (3/12): bracket an integer division differently
    if (
        not py
        and node.__class__ is BinOp
        and node.op == "/"
        and node.left.__class__ is Num
        and node.right.__class__ is Num
        and _INT_TEXT.match(node.left.text)
        and _INT_TEXT.match(node.right.text)
    ):
        return f"[{s}]"
    return f"({s})"


def _infix(node: Expr, py: bool = False) -> str:
    cls = node.__class__
    if cls is Num:
        return _number_text(node.value) if py else node.text
    if cls is Var or cls is Placeholder:
        return node.name
    if cls is Neg:
        inner = node.operand
        s = _infix(inner, py)
        # -(3) stays a negation when read back (-3 is the literal), -(a * b) keeps its tree
        if inner.__class__ is Num:
            return f"-{s}" if s.startswith("(") else f"-({s})"
        return f"-{_wrap(inner, s, py)}" if _prec(inner) <= _UNARY_PREC else f"-{s}"
    p = _PREC[node.op]
    left, right = _infix(node.left, py), _infix(node.right, py)
    lp, rp = _prec(node.left), _prec(node.right)
    if node.op == "^":
        if lp <= p:
            left = _wrap(node.left, left, py)
        if rp < p:
            right = _wrap(node.right, right, py)
    else:
        if lp < p:
            left = _wrap(node.left, left, py)
        if rp <= p or rp == _UNARY_PREC:  # a - (b - c) keeps its tree; a * (-b) reads better
            right = _wrap(node.right, right, py)
    return f"{left} {'**' if py and node.op == '^' else node.op} {right}"


def to_infix(node: Expr | Equation) -> str:
    """Canonical infix text with the fewest parentheses that keep the tree:
    ``N0 * (N1 + N2)``, ``x = 3 - (4 - 5)``, ``(-2) ^ 2``. A division of two integer literals
    that needs grouping is bracketed ``[3 / 12]``, because ``(3/12)`` is one literal."""
    if isinstance(node, Equation):
        return f"{_infix(node.lhs)} = {_infix(node.rhs)}"
    return _infix(node)


def to_python(node: Expr) -> str:
    """The expression as Python source: the tree of :func:`to_infix` with ``**`` for ``^``,
    plain parentheses, and literals as Python numbers (``25%`` is ``0.25``, ``(1/3)`` the
    division ``(1/3)``). Placeholders and variables keep their names."""
    if isinstance(node, Equation):
        raise EquationError("an equation has no Python expression; render one side")
    return _infix(node, py=True)


def _prefix(node: Expr, out: list[str]) -> None:
    cls = node.__class__
    if cls is Num:
        out.append(node.text)
    elif cls is Var or cls is Placeholder:
        out.append(node.name)
    elif cls is Neg:
        out.append("neg")
        _prefix(node.operand, out)
    else:
        out.append(node.op)
        _prefix(node.left, out)
        _prefix(node.right, out)


def to_prefix(node: Expr | Equation) -> str:
    """Space-separated prefix (Polish) tokens: ``* N0 + N1 N2``. Unary minus is ``neg``; an
    equation is ``= lhs rhs``."""
    out: list[str] = []
    if isinstance(node, Equation):
        out.append("=")
        _prefix(node.lhs, out)
        _prefix(node.rhs, out)
    else:
        _prefix(node, out)
    return " ".join(out)


_PREFIX_OPS = {"+", "-", "*", "/", "^", "**"}


def parse_prefix(text: str) -> Expr | Equation:
    """The inverse of :func:`to_prefix`."""
    if not isinstance(text, str) or not text.strip():
        raise EquationError("empty prefix expression")
    tokens = text.split()
    pos = 0

    def take() -> Expr:
        nonlocal pos
        if pos >= len(tokens):
            raise EquationError(f"prefix expression ends early: {text!r}")
        tok = tokens[pos]
        pos += 1
        if tok in _PREFIX_OPS:
            left = take()
            return BinOp("^" if tok == "**" else tok, left, take())
        if tok == "neg":
            return Neg(take())
        if tok == "=":
            raise EquationError(f"'=' inside a prefix expression: {text!r}")
        node = parse_expression(tok)
        if isinstance(node, (BinOp, Neg)):
            raise EquationError(f"not a prefix token: {tok!r}")
        return node

    try:
        if tokens[0] == "=":
            pos = 1
            result: Expr | Equation = Equation(take(), take())
        else:
            result = take()
    except RecursionError:
        raise EquationError("prefix expression nested too deeply") from None
    if pos != len(tokens):
        raise EquationError(f"extra tokens after a complete prefix expression: {text!r}")
    return result


# --------------------------------------------------------------------------------------------
# Helpers over the tree
# --------------------------------------------------------------------------------------------


def _walk(node: Expr) -> Iterator[Expr]:
    """Nodes in textual (in-order) order, without recursion."""
    stack: list = [node]
    while stack:
        n = stack.pop()
        cls = n.__class__
        if cls is BinOp:
            stack.append(n.right)
            stack.append((n,))  # the operator itself, yielded between its operands
            stack.append(n.left)
        elif cls is tuple:
            yield n[0]
        else:
            yield n
            if cls is Neg:
                stack.append(n.operand)


def _roots(x: Expr | Equation | str) -> list[Expr]:
    if isinstance(x, str):
        x = parse(x)
    return [x.lhs, x.rhs] if isinstance(x, Equation) else [x]


_FRACTION_TEXT = re.compile(r"\((-?\d+)/(\d+)\)\Z")


def literal_numbers(x: Expr | Equation | str) -> list[Literal]:
    """Every numeric literal, in textual order (duplicates kept). ``(1/3)`` and ``((1)/(3))``
    are one literal (value 1/3, ``fraction_parts=(1, 3)``); ``25%`` is 1/4 with
    ``percent=True``; a folded sign stays on the value (``-7`` has value -7)."""
    out = []
    for root in _roots(x):
        for n in _walk(root):
            if n.__class__ is Num:
                m = _FRACTION_TEXT.match(n.text)
                parts = (Fraction(int(m.group(1))), Fraction(int(m.group(2)))) if m else None
                out.append(Literal(n.value, n.text, n.text.endswith("%"), parts))
    return out


def placeholders(x: Expr | Equation | str) -> tuple[int, ...]:
    """Sorted distinct placeholder indices (``N0 + N2 * N0`` -> (0, 2))."""
    return tuple(sorted({n.index for r in _roots(x) for n in _walk(r) if n.__class__ is Placeholder}))


def operator_count(x: Expr | Equation | str) -> int:
    """Binary operators in an expression or equation (``x=(11-1)*2`` -> 2; negation not counted)."""
    return sum(1 for r in _roots(x) for n in _walk(r) if n.__class__ is BinOp)


def variables(x: Expr | Equation | str) -> tuple[str, ...]:
    """Sorted distinct variable names (placeholders excluded)."""
    return tuple(sorted({n.name for r in _roots(x) for n in _walk(r) if n.__class__ is Var}))


def substitute(
    x: Expr | Equation,
    mapping: Mapping[str, Fraction | int | Expr],
) -> Expr | Equation:
    """Replace variables / placeholders by name (``{"N0": Fraction(3), "x": Var("y")}``)."""
    if isinstance(x, Equation):
        return Equation(substitute(x.lhs, mapping), substitute(x.rhs, mapping))

    def rec(n: Expr) -> Expr:
        cls = n.__class__
        if cls is Var or cls is Placeholder:
            if n.name in mapping:
                v = mapping[n.name]
                return v if isinstance(v, (Num, Var, Placeholder, Neg, BinOp)) else Num(Fraction(v))
            return n
        if cls is Neg:
            return Neg(rec(n.operand))
        if cls is BinOp:
            return BinOp(n.op, rec(n.left), rec(n.right))
        return n

    return rec(x)


# --------------------------------------------------------------------------------------------
# Literals over placeholders
# --------------------------------------------------------------------------------------------

_HUNDREDTH = Fraction(1, 100)
_HUNDRED = Fraction(100)


class UnmappedLiteral(EquationError):
    """A literal that is neither a quantity nor an allowed constant (``text`` says which)."""

    def __init__(self, text: str) -> None:
        super().__init__(f"number {text} is neither a quantity nor a constant")
        self.text = text


def _literal_tiers(
    num: Num,
    quantities: Sequence[Fraction],
    constants: Collection[Fraction],
    percent_quantities: Sequence[int],
    lenient: bool,
) -> list[list[Expr]]:
    """What one literal may stand for, in tiers of preference (see placeholder_readings)."""
    v = num.value
    hits: list[Expr] = [Placeholder(i) for i, q in enumerate(quantities) if q == v]
    tiers = [hits]
    if not hits and v < 0:  # a folded sign: -7 is the negation of a quantity 7
        tiers.append([Neg(Placeholder(i)) for i, q in enumerate(quantities) if q == -v])
    if v in constants:
        tiers.append([Num(v)])
    # a percentage quantity written without its sign: 20 for 20% (= N * 100)
    tiers.append([BinOp("*", Placeholder(i), Num(_HUNDRED)) for i in percent_quantities
                  if quantities[i] * 100 == v])
    if any(tiers):
        return tiers
    if lenient and v == _HUNDREDTH and (percent_quantities or _HUNDRED in constants):
        return [[Num(v)]]  # n * 0.01 is n / 100
    m = _FRACTION_TEXT.match(num.text)
    if m:  # Math23K's (n/d): the fraction's two parts may be two quantities
        parts = []
        for text in m.groups():
            part = Fraction(int(text))
            opts: list[Expr] = [Placeholder(i) for i, q in enumerate(quantities) if q == part]
            if lenient and part in constants:
                opts.append(Num(part))
            parts.append(opts)
        return [[BinOp("/", a, b) for a in parts[0] for b in parts[1]]]
    return []


def _uses(node: Expr) -> list[int]:
    return [n.index for n in _walk(node) if n.__class__ is Placeholder]


def placeholder_readings(
    node: Expr | Equation,
    quantities: Sequence[Fraction],
    constants: Collection[Fraction] = (),
    *,
    percent_quantities: Sequence[int] = (),
    lenient: bool = False,
    limit: int = 64,
) -> list[Expr | Equation]:
    """``node`` with every numeric literal read over the placeholders of ``quantities``.

    A literal becomes the placeholder of a quantity of its value; or, when none has it, the
    negation of one (``-7`` for a quantity 7); it stays a number when it is one of
    ``constants``; it is ``N_i * 100`` when quantity ``i`` (listed in ``percent_quantities``) is
    a percentage written without its sign; a ``(n/d)`` literal no quantity or constant has is
    ``N_a / N_b`` for quantities ``n`` and ``d``. ``lenient`` adds what dataset coverage counts
    (:mod:`distill.data.stats`): ``0.01`` as ``/100`` and constant parts of a ``(n/d)``.

    Several quantities of one value, or a value that is both a quantity and a constant, give
    several readings (at most ``limit``). The first is the preferred one: literals in textual
    order, each taking the first quantity of its value not used yet (else the first one), a
    quantity before a constant. Raises :class:`UnmappedLiteral` for a literal with no reading.
    """
    consts = constants if isinstance(constants, (set, frozenset)) else set(constants)
    roots = [node.lhs, node.rhs] if isinstance(node, Equation) else [node]
    nums = [n for r in roots for n in _walk(r) if n.__class__ is Num]
    tiers = []
    for num in nums:
        t = _literal_tiers(num, quantities, consts, percent_quantities, lenient)
        if not any(t):
            raise UnmappedLiteral(num.text)
        tiers.append([tier for tier in t if tier])
    out: list[list[Expr]] = []

    def dfs(i: int, used: set[int], chosen: list[Expr]) -> None:
        if i == len(tiers):
            out.append(list(chosen))
            return
        for tier in tiers[i]:
            # within a tier, readings that use no quantity twice first
            for opt in sorted(tier, key=lambda o: sum(u in used for u in _uses(o))):
                if len(out) >= limit:
                    return
                idx = _uses(opt)
                chosen.append(opt)
                dfs(i + 1, used | set(idx), chosen)
                chosen.pop()

    dfs(0, set(), [])

    def rebuild(n: Expr, it: Iterator[Expr]) -> Expr:
        cls = n.__class__
        if cls is Num:
            return next(it)
        if cls is BinOp:
            left = rebuild(n.left, it)
            return BinOp(n.op, left, rebuild(n.right, it))
        if cls is Neg:
            return Neg(rebuild(n.operand, it))
        return n

    readings: list[Expr | Equation] = []
    for choice in out:
        it = iter(choice)
        if isinstance(node, Equation):
            lhs = rebuild(node.lhs, it)
            readings.append(Equation(lhs, rebuild(node.rhs, it)))
        else:
            readings.append(rebuild(node, it))
    return readings
