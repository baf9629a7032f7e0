"""Search trees: the compact form the enumerator builds, and what it becomes downstream.

A tree is a leaf or a tuple ``(op, left, right)`` with ``op`` in ``+ - * / ^``. A leaf is an
``int``: ``i >= 0`` is quantity ``N<i>``, ``~j`` (that is ``-j - 1``) is the ``j``-th constant of
the search. Trees are plain tuples so that the enumerator can build millions of them cheaply;
everything else goes through :mod:`distill.equations`, the project's one expression AST:

* :func:`exact_value` -- the exact value (``Fraction``) for given quantity and constant values;
* :func:`fingerprint` -- the tree evaluated modulo a 61-bit prime at fixed pseudo-random values
  of ``N0, N1, ...`` (constants keep their own values). Two trees get the same fingerprint iff
  they are the same rational function of the placeholders (up to a collision probability of
  about ``degree / 2**61``), whatever the real quantities of a problem are: it is the identity of
  an expression for de-duplication and the key of a *template* across problems;
* :func:`normal_form` / :func:`to_ast` -- the canonical rendering: ``+``/``-`` chains and
  ``*``/``/`` chains flattened and their operands sorted, so ``N1 + N0`` and ``N0 + N1``, or
  ``N0 - (N1 - N2)`` and ``N0 + N2 - N1``, print the same; the operator count is unchanged.
"""

from __future__ import annotations

import random
from fractions import Fraction
from functools import lru_cache
from typing import Sequence, Union

from distill.equations import BINARY_OPS, BinOp, EquationError, Expr, Num, Placeholder

Tree = Union[int, tuple]

# A Mersenne prime: fingerprints are exact rational functions evaluated in GF(P).
P = (1 << 61) - 1
_MAX_PLACEHOLDERS = 256
_rng = random.Random(20240315)
_RESIDUES = tuple(_rng.randrange(1 << 40, P - 1) for _ in range(_MAX_PLACEHOLDERS))


def is_quantity(leaf: int) -> bool:
    return leaf >= 0


def constant_leaf(j: int) -> int:
    """The leaf of the ``j``-th constant."""
    return ~j


def tree_ops(t: Tree) -> int:
    """Binary operators in a tree."""
    if t.__class__ is int:
        return 0
    return 1 + tree_ops(t[1]) + tree_ops(t[2])


def leaves(t: Tree, out: list | None = None) -> list[int]:
    """Leaves in textual order."""
    if out is None:
        out = []
    if t.__class__ is int:
        out.append(t)
    else:
        leaves(t[1], out)
        leaves(t[2], out)
    return out


def exact_value(t: Tree, qvals: Sequence[Fraction], cvals: Sequence[Fraction]) -> Fraction | None:
    """The exact value of a tree (the operators of :data:`distill.equations.BINARY_OPS`);
    ``None`` where :func:`distill.equations.evaluate` would raise (a division by zero, a power
    out of range). The search's inner check: a walk over tuples, no AST built."""
    if t.__class__ is int:
        return qvals[t] if t >= 0 else cvals[~t]
    a = exact_value(t[1], qvals, cvals)
    if a is None:
        return None
    b = exact_value(t[2], qvals, cvals)
    if b is None:
        return None
    try:
        return BINARY_OPS[t[0]](a, b)
    except EquationError:
        return None


def _mod(v: Fraction) -> int:
    return v.numerator % P * pow(v.denominator % P, P - 2, P) % P


def fingerprint(t: Tree, cmods: Sequence[int]) -> int | None:
    """The tree as an element of GF(P) at the fixed residues of ``N0, N1, ...``.

    ``cmods`` are the constants' values mod P (:func:`constant_residues`). ``None`` when a
    divisor is identically zero (the expression is undefined for every value of the
    quantities). A power needs a constant integer exponent 0..64 (its residue is the exponent)."""
    got = _fp(t, cmods)
    if got is None or got[1] == 0:
        return None
    return got[0] * pow(got[1], -1, P) % P


def _fp(t: Tree, cmods: Sequence[int]) -> tuple[int, int] | None:
    # (numerator, denominator) in GF(P): one modular inverse per tree, not one per division
    if t.__class__ is int:
        return (_RESIDUES[t] if t >= 0 else cmods[~t]), 1
    a = _fp(t[1], cmods)
    if a is None:
        return None
    b = _fp(t[2], cmods)
    if b is None:
        return None
    an, ad = a
    bn, bd = b
    op = t[0]
    if op == "+":
        return (an * bd + bn * ad) % P, ad * bd % P
    if op == "-":
        return (an * bd - bn * ad) % P, ad * bd % P
    if op == "*":
        return an * bn % P, ad * bd % P
    if op == "/":
        if bn == 0:
            return None
        return an * bd % P, ad * bn % P
    if bd != 1 or bn > 64:
        return None
    return pow(an, bn, P), pow(ad, bn, P)


def constant_residues(cvals: Sequence[Fraction]) -> tuple[int, ...]:
    return _residues(tuple(cvals))


@lru_cache(maxsize=64)
def _residues(cvals: tuple[Fraction, ...]) -> tuple[int, ...]:
    return tuple(_mod(c) for c in cvals)


# --------------------------------------------------------------------------------------------
# Canonical rendering
# --------------------------------------------------------------------------------------------
# A normal form is a leaf ("q", i) / ("c", j), a sum ("+", pos_terms, neg_terms), a product
# ("*", num_factors, den_factors) or a power ("^", base, exponent); operand tuples are sorted.


def _sort_key(nf: tuple, cvals: Sequence[Fraction]) -> tuple:
    kind = nf[0]
    if kind == "q":
        return (0, nf[1])
    if kind == "c":
        return (2, cvals[nf[1]])
    qs = _placeholders_of(nf)
    return (1 if qs else 3, min(qs) if qs else 0, repr(nf))


def _placeholders_of(nf: tuple) -> list[int]:
    kind = nf[0]
    if kind == "q":
        return [nf[1]]
    if kind == "c":
        return []
    if kind == "^":
        return _placeholders_of(nf[1]) + _placeholders_of(nf[2])
    return [i for part in nf[1] + nf[2] for i in _placeholders_of(part)]


def normal_form(t: Tree, cvals: Sequence[Fraction]) -> tuple:
    """The canonical normal form of a tree (see the module docstring)."""
    if t.__class__ is int:
        return ("q", t) if t >= 0 else ("c", ~t)
    op = t[0]
    for kind, up, down in (("+", "+", "-"), ("*", "*", "/")):
        if op in (up, down):
            pos: list = []
            neg: list = []
            _collect(t, 1, up, down, pos, neg, cvals)
            key = lambda nf: _sort_key(nf, cvals)
            return (kind, tuple(sorted(pos, key=key)), tuple(sorted(neg, key=key)))
    return ("^", normal_form(t[1], cvals), normal_form(t[2], cvals))


def _collect(t: Tree, sign: int, plus: str, minus: str, pos: list, neg: list, cvals) -> None:
    if t.__class__ is not int and t[0] in (plus, minus):
        _collect(t[1], sign, plus, minus, pos, neg, cvals)
        _collect(t[2], sign if t[0] == plus else -sign, plus, minus, pos, neg, cvals)
        return
    (pos if sign > 0 else neg).append(normal_form(t, cvals))


def nf_to_tree(nf: tuple) -> Tree:
    """A normal form back as a tree: chains left-associated, positive terms first."""
    kind = nf[0]
    if kind == "q":
        return nf[1]
    if kind == "c":
        return ~nf[1]
    if kind == "^":
        return ("^", nf_to_tree(nf[1]), nf_to_tree(nf[2]))
    up, down = ("+", "-") if kind == "+" else ("*", "/")
    first, *rest = nf[1]
    out = nf_to_tree(first)
    for part in rest:
        out = (up, out, nf_to_tree(part))
    for part in nf[2]:
        out = (down, out, nf_to_tree(part))
    return out


def canonical_tree(t: Tree, cvals: Sequence[Fraction]) -> Tree:
    """The tree rewritten in its canonical order (same operators, same value)."""
    return nf_to_tree(normal_form(t, cvals))


def to_ast(t: Tree, cvals: Sequence[Fraction], qvals: Sequence[Fraction] | None = None) -> Expr:
    """The tree as a :mod:`distill.equations` expression: over placeholders ``N<i>``, or over
    the real numbers when ``qvals`` is given (literals in canonical form: ``3.14``, ``(4/7)``)."""
    if t.__class__ is int:
        if t >= 0:
            return Num(qvals[t]) if qvals is not None else Placeholder(t)
        return Num(cvals[~t])
    return BinOp(t[0], to_ast(t[1], cvals, qvals), to_ast(t[2], cvals, qvals))
