"""The enumerator: every distinct expression over a problem's quantities that hits its answer.

Takes exact quantity values ``N0..Nk``, constants, a target and limits; gives the distinct
matching expressions (trees, see :mod:`distill.search.expr`) with their exact values and search
statistics. numpy + the standard library; no Ray.

Grammar: binary trees over the quantities (each used at most once, or ``max_uses`` times with
``allow_reuse``) and the constants (any number of times), operators ``+ - * /`` and optionally
``^`` (with a constant integer exponent 2..8), at most ``max_ops`` operators; a match uses at
least one quantity.

How it works
------------
* **Tables by quantity subset.** Level 0 holds the leaves; level ``k`` every ``x op y`` with
  ``ops(x) + ops(y) = k - 1``, built vectorised and only as far as needed (``(max_ops-1)//2``
  levels suffice). An entry has a usage mask (which quantities, how often), a real value and
  its value at a fixed *generic point* (random values for ``N0..Nk``, constants as they are):
  entries with the same mask and generic value are the same function, so the one with more
  operators is an identity (``x*1``, ``x/1``, ``2/2``, ``1+1``, ``x+2-2``) and is dropped, and
  two ways of writing one function (``2+2``, ``2*2``) share an entry. Entries that merely have
  the same real value (``N0+2`` and ``N0*2`` when ``N0 = 2``) are different expressions and are
  both kept. Zero intermediates are dropped, and negative ones unless ``allow_negative``, a
  negative target or a negative quantity asks for them (from positive leaves, ``+ - * /``
  write every positive value without negative intermediates at the same operator count, so no
  positive value is lost; a negative one, such as ``2/(10-6*9)``, may need them).
* **The first two levels in plain Python.** A quantity alone and every ``x op y`` of two leaves
  are checked with float arithmetic and no arrays: most problems end there, where numpy's fixed
  cost per call would dominate. The tables start at level 2.
* **Meet in the middle.** A level-``k`` match ``T = a op b`` needs ``b = T - a``, ``a - T``,
  ``T / a``, ``a / T`` ... for a table entry ``a``; the needed value is looked up in a table
  (binary search over the sorted values) or, when it must come from a deeper expression, split
  again the same way, so the last levels are never materialised. Lookups use intervals (the
  target's tolerance plus a float margin), vectorised over all rows at once.
* **Exact checks, each distinct expression once.** Every candidate carries its generic value
  (composed along its path as a Moebius map), so candidates that are the same function are
  grouped before any Python work. One tree per group -- its simplest: fewest repeated
  quantities, then constants -- is rebuilt, evaluated exactly (``fractions``, the operators of
  :data:`distill.equations.BINARY_OPS`) and kept only if
  its value equals the target: exactly, or within :func:`distill.grading.values_match`'s
  tolerance where rounding is possible (:func:`needs_tolerance`; such a match is marked
  inexact). Matches are keyed by their fingerprint (the exact rational function of the
  placeholders, :func:`distill.search.expr.fingerprint`); for a key the representative with the
  fewest operators, then exact before within-tolerance, then fewest repeats and constants, is
  kept. So commutative, associative and distributive variants and identities collapse, and
  :func:`enumerate_distinct` lists each distinct expression once (checked against brute force
  in the tests).

Stop rules (``mode``): ``first`` -- the first match of the smallest operator count;
``minimal`` -- every match of the smallest operator count; ``all`` -- every match up to
``max_ops`` (what ranking needs). A budget (expressions examined and/or milliseconds) bounds one
problem; the statistics say when it was hit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Iterator, Sequence

import numpy as np

from distill.grading import DEFAULT_REL_TOL, values_match
from distill.search.expr import Tree, constant_residues, exact_value, fingerprint, leaves

__all__ = ["Match", "SearchStats", "Search", "needs_tolerance", "enumerate_distinct", "MODES"]

MODES = ("first", "minimal", "all")
OPS_ALL = "+-*/^"
# Codes of a meet-in-the-middle step: the known side S, the unknown U.
_S_ADD_U, _S_SUB_U, _S_MUL_U, _S_DIV_U, _U_SUB_S, _U_DIV_S, _U_POW_S = range(7)
_SIDE_LEFT_CODES = ((_S_ADD_U, "+"), (_S_SUB_U, "-"), (_S_MUL_U, "*"), (_S_DIV_U, "/"))
_SIDE_RIGHT_CODES = ((_U_SUB_S, "-"), (_U_DIV_S, "/"), (_U_POW_S, "^"))
# code -> (operator, whether the known side is the left operand)
_CODE_OPS = {c: (o, True) for c, o in _SIDE_LEFT_CODES} | {c: (o, False) for c, o in _SIDE_RIGHT_CODES}
_PAD = 1e-10  # float margin of a lookup interval, relative to the magnitudes involved
_SAME = 1e-9  # generic values this close (relatively) are the same function
_MAX_QUANTITIES_REUSE = 21  # 3 bits per quantity in an int64 usage mask
_MAX_QUANTITIES = 62
_ONE, _ZERO = np.ones(1), np.zeros(1)
_EXPONENTS = {2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0}
_ZERO_INT, _FALSE = np.zeros(1, np.int64), np.zeros(1, bool)
# The generic point: fixed pseudo-random values of N0, N1, ...
_GENERIC = np.random.default_rng(7).uniform(1.5, 9.5, size=_MAX_QUANTITIES)


@lru_cache(maxsize=64)
def _constant_info(key: tuple) -> tuple[list[Fraction], list[float], tuple[int, ...]]:
    """Distinct constants (first occurrence kept), their floats and residues, keyed by
    ``(numerator, denominator)`` pairs (hashing Fractions costs more than the search of an
    easy problem)."""
    distinct: list[Fraction] = []
    for n, d in key:
        c = Fraction(n, d)
        if c not in distinct:
            distinct.append(c)
    return distinct, [_float(c) for c in distinct], constant_residues(distinct)


def _constants_key(constants: Sequence) -> tuple:
    out = []
    for c in constants:
        if c.__class__ is not Fraction:
            c = Fraction(c)
        out.append((c.numerator, c.denominator))
    return tuple(out)


def _float(v: Fraction) -> float:
    try:
        return v.numerator / v.denominator  # correctly rounded, and faster than float(v)
    except OverflowError:
        return float("inf") if v > 0 else float("-inf")


def needs_tolerance(target: Fraction, quantities: Sequence[Fraction]) -> bool:
    """Whether matches may be approximate: the answer is not an integer (``0.6667``, ``242.17``
    and ``5/12`` read from ``0.4166666666666667`` are roundings), or a quantity is a rounded
    decimal (denominator above 1000, such as ``0.3333333333333333``). Then a value within
    :func:`distill.grading.values_match`'s tolerance matches; otherwise -- an integer answer
    from exact quantities -- only the exact value does, since a tolerance there admits only
    near misses (``1466.1`` for ``1466``)."""
    return target.denominator != 1 or any(q.denominator > 1000 for q in quantities)


@dataclass
class Match:
    """One distinct expression whose exact value agrees with the target."""

    tree: Tree
    value: Fraction
    ops: int
    key: int  # fingerprint: the expression's identity, and its template's across problems
    uses: tuple[int, ...]  # quantity indices in textual order, repeats included
    n_constants: int
    exact: bool = True  # the value equals the target exactly (not only within tolerance)


@dataclass
class SearchStats:
    """What one search did. ``expressions`` counts partial expressions examined (table
    candidates, meet-in-the-middle rows and lookup hits); ``levels_done`` is the largest
    operator count searched completely."""

    expressions: int = 0
    candidates: int = 0
    levels_done: int = -1
    found_level: int | None = None
    time_ms: float = 0.0
    budget_hit: str | None = None  # "expressions" | "time" | None
    skipped: str | None = None  # why the search did not run
    reuse_fallback: bool = False  # searched again with quantity reuse after no match

    def add_earlier(self, first: SearchStats) -> None:
        """Count a search that ran before this one on the same problem (the fallback's first
        try) in the expressions, candidates and time."""
        self.expressions += first.expressions
        self.candidates += first.candidates
        self.time_ms += first.time_ms
        self.reuse_fallback = True

    def to_dict(self) -> dict:
        return {
            "expressions": self.expressions,
            "candidates": self.candidates,
            "levels_done": self.levels_done,
            "found_level": self.found_level,
            "time_ms": round(self.time_ms, 3),
            "budget_hit": self.budget_hit,
            "skipped": self.skipped,
            "reuse_fallback": self.reuse_fallback,
        }


class _BudgetHit(Exception):
    pass


class _Done(Exception):
    pass


@dataclass
class _Level:
    """One level's entries as built: real values, generic values, usage masks, derivations
    (a leaf for level 0, else ``(op, level_a, index_a, level_b, index_b)`` refs)."""

    val: np.ndarray
    gen: np.ndarray
    mask: np.ndarray
    refs: list
    nconst: np.ndarray  # constant leaves of the (first) derivation

    @staticmethod
    def empty() -> _Level:
        return _Level(np.zeros(0), np.zeros(0), np.zeros(0, np.int64), [], np.zeros(0, np.int64))


@dataclass
class _Table:
    """A level's entries sorted by value (``raw[i]`` is the build index of sorted entry i)."""

    val: np.ndarray
    gen: np.ndarray
    mask: np.ndarray
    raw: np.ndarray
    is_exp: np.ndarray  # a constant integer 2..8 (usable as an exponent)
    nconst: np.ndarray


@dataclass
class _Front:
    """Rows of one meet-in-the-middle stage: row i needs an expression with ``r`` operators
    whose value lies in [lo[i], hi[i]] and that fits usage ``mask[i]``. The root's generic
    value is ``(ga*g + gb) / (gc*g + gd)`` of the row expression's generic value g."""

    lo: np.ndarray
    hi: np.ndarray
    mask: np.ndarray
    r: int
    ga: np.ndarray
    gb: np.ndarray
    gc: np.ndarray
    gd: np.ndarray
    pw: np.ndarray  # a power on the path (generic value recomputed from the tree)
    nconst: np.ndarray  # constant leaves of the sides so far
    parent: _Front | None = None
    parent_row: np.ndarray | None = None
    side_level: int = 0
    side_idx: np.ndarray | None = None
    code: np.ndarray | None = None


@dataclass
class Search:
    """One problem's search: build, then :meth:`run` once."""

    quantities: Sequence[Fraction]
    constants: Sequence[Fraction]
    target: Fraction
    max_ops: int = 3
    ops: str = "+-*/"
    allow_reuse: bool = False
    max_uses: int = 2
    allow_negative: bool = False
    rel_tol: float = DEFAULT_REL_TOL
    max_expressions: int | None = None
    max_ms: float | None = None
    stats: SearchStats = field(default_factory=SearchStats)

    def __post_init__(self) -> None:
        self.quantities = [q if q.__class__ is Fraction else Fraction(q) for q in self.quantities]
        self.constants, self._cfloats, self.cmods = _constant_info(_constants_key(self.constants))
        self.target = self.target if isinstance(self.target, Fraction) else Fraction(self.target)
        bad = set(self.ops) - set(OPS_ALL)
        if bad:
            raise ValueError(f"unknown operator(s) {sorted(bad)}; allowed: {OPS_ALL}")
        if self.max_ops < 0:
            raise ValueError("max_ops must be >= 0")
        n = len(self.quantities)
        self._reuse = self.allow_reuse and self.max_uses > 1
        if self._reuse and self.max_uses > 2:
            raise ValueError("max_uses > 2 is not supported")
        self._width = 3 if self._reuse else 1
        n_fields = min(n, _MAX_QUANTITIES_REUSE if self._reuse else _MAX_QUANTITIES)
        self._low = sum(1 << (3 * i) for i in range(n_fields)) if self._reuse else 0
        self._high = self._low << 2
        # tables up to (max_ops - 1) // 2 suffice (every split of a larger expression has a
        # side that small); level 1 is worth building from max_ops 2 on
        self._depth = max(1, (self.max_ops - 1) // 2) if self.max_ops >= 2 else 0
        self._generic_paths = True
        # Positive leaves give every positive value without negative intermediates (at the
        # same operator count); a negative target or quantity needs them.
        self._negative = (self.allow_negative or self.target < 0
                          or any(q < 0 for q in self.quantities))
        self._t0 = time.perf_counter()

    # ------------------------------------------------------------------ usage masks
    def _fits(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Whether two usage masks combine (each quantity within its uses), and the union."""
        if not self._reuse:
            return (a & b) == 0, a | b
        s = a + b  # 3-bit count per quantity: 0, 1, 2 fit; 3 (0b011) and 4+ (0b1xx) do not
        return ((s & self._high) | (s & self._low & (s >> 1))) == 0, s

    # ------------------------------------------------------------------ budget
    def _charge(self, n: int) -> None:
        st = self.stats
        st.expressions += int(n)
        if self.max_expressions is not None and st.expressions > self.max_expressions:
            st.budget_hit = "expressions"
            raise _BudgetHit
        if self.max_ms is not None and (time.perf_counter() - self._t0) * 1000 > self.max_ms:
            st.budget_hit = "time"
            raise _BudgetHit

    # ------------------------------------------------------------------ tables
    def _build_level0(self) -> None:
        vals, gens, masks, refs = [], [], [], []
        for i, v in enumerate(self.quantities):
            if v != 0:
                vals.append(_float(v))
                gens.append(_GENERIC[i])
                masks.append(1 << (self._width * i))
                refs.append(i)
        for j, (v, f) in enumerate(zip(self.constants, self._cfloats)):
            if v != 0:
                vals.append(f)
                gens.append(f)
                masks.append(0)
                refs.append(~j)
        level0 = _Level(np.array(vals, float), np.array(gens, float), np.array(masks, np.int64), refs,
                        np.array([1 if r < 0 else 0 for r in refs], np.int64))
        self._levels = [level0]
        self.tables = [self._to_table(level0, exps=True)]
        self._tree_memo: dict = {}

    def _ensure(self, level: int) -> None:
        """Build the tables up to ``level`` (on first need: most searches end before)."""
        while len(self.tables) <= level:
            new = self._combine_level(len(self._levels))
            self._levels.append(new)
            self.tables.append(self._to_table(new))

    def _combine_level(self, k: int) -> _Level:
        """Every ``x op y`` with ``ops(x) + ops(y) = k - 1``, identities dropped."""
        ops, levels = self.ops, self._levels
        parts = []

        def emit(op, v, g, m, la, ia, lb, ib):
            nconst = levels[la].nconst[ia] + levels[lb].nconst[ib]
            parts.append((v, g, m, np.full(len(v), op), np.full(len(v), la), ia,
                          np.full(len(v), lb), ib, nconst))

        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for a in range(k):
                b = k - 1 - a
                if a > b:
                    continue
                A, B = levels[a], levels[b]
                if not len(A.val) or not len(B.val):
                    continue
                ok, joined = self._fits(A.mask[:, None], B.mask[None, :])
                self._charge(ok.size)
                upper = np.triu(ok) if a == b else ok  # x+y once; x+x where it fits
                strict = np.triu(ok, 1) if a == b else ok  # no x-x, x/x
                i, j = np.nonzero(upper)
                if len(i):
                    av, bv, ag, bg, m = A.val[i], B.val[j], A.gen[i], B.gen[j], joined[i, j]
                    if "+" in ops:
                        emit("+", av + bv, ag + bg, m, a, i, b, j)
                    if "*" in ops:
                        emit("*", av * bv, ag * bg, m, a, i, b, j)
                i, j = np.nonzero(strict)
                if len(i):
                    av, bv, ag, bg, m = A.val[i], B.val[j], A.gen[i], B.gen[j], joined[i, j]
                    if "-" in ops:
                        emit("-", av - bv, ag - bg, m, a, i, b, j)
                        emit("-", bv - av, bg - ag, m, b, j, a, i)
                    if "/" in ops:
                        emit("/", av / bv, ag / bg, m, a, i, b, j)
                        emit("/", bv / av, bg / ag, m, b, j, a, i)
            if "^" in ops:  # x ^ e, e a constant integer exponent 2..8
                E, X = self.tables[0], levels[k - 1]
                e_sorted = np.nonzero(E.is_exp)[0]
                if len(e_sorted) and len(X.val):
                    e_raw = E.raw[e_sorted]
                    xi = np.repeat(np.arange(len(X.val)), len(e_raw))
                    ei = np.tile(e_raw, len(X.val))
                    ev = levels[0].val[ei]
                    ok = np.abs(X.val[xi]) < 1e9
                    xi, ei, ev = xi[ok], ei[ok], ev[ok]
                    emit("^", X.val[xi] ** ev, X.gen[xi] ** ev, X.mask[xi], k - 1, xi, 0, ei)
        if not parts:
            return _Level.empty()
        v, g, m, op, la, ia, lb, ib, nk = (np.concatenate(x) for x in zip(*parts))
        keep = np.isfinite(v) & np.isfinite(g) & (np.abs(v) > 1e-12) & (np.abs(g) > 1e-12)
        if not self._negative:
            keep &= v > 0
        sel = np.nonzero(keep)[0]
        v, g, m, op, la, ia, lb, ib, nk = (x[sel] for x in (v, g, m, op, la, ia, lb, ib, nk))
        # Group equal functions: sort the lower levels and the new entries by (mask, generic).
        low_m = np.concatenate([lv.mask for lv in levels])
        low_g = np.concatenate([lv.gen for lv in levels])
        all_m = np.concatenate([low_m, m])
        all_g = np.concatenate([low_g, g])
        order = np.lexsort((all_g, all_m))
        sm, sg = all_m[order], all_g[order]
        is_new = order >= len(low_m)
        same = np.zeros(len(order), bool)
        same[1:] = (sm[1:] == sm[:-1]) & (
            np.abs(sg[1:] - sg[:-1]) <= _SAME * np.maximum(np.abs(sg[1:]), np.abs(sg[:-1]))
        )
        group = np.cumsum(~same) - 1
        has_old = np.zeros(int(group[-1]) + 1 if len(group) else 0, bool)
        has_old[group[~is_new]] = True
        pos = np.nonzero(is_new & ~has_old[group])[0]
        if not len(pos):
            return _Level.empty()
        members = order[pos] - len(low_m)
        grp = group[pos]
        first = np.ones(len(grp), bool)
        first[1:] = grp[1:] != grp[:-1]
        reps = members[first]
        # one derivation per entry is enough: the others are the same function
        refs = list(zip(op[reps].tolist(), la[reps].tolist(), ia[reps].tolist(),
                        lb[reps].tolist(), ib[reps].tolist()))
        return _Level(v[reps], g[reps], m[reps], refs, nk[reps])

    def _to_table(self, level: _Level, exps: bool = False) -> _Table:
        order = np.argsort(level.val, kind="stable")
        val = level.val[order]
        mask = level.mask[order]
        is_exp = np.zeros(len(val), bool)
        if exps and "^" in self.ops:
            is_exp = (mask == 0) & (val >= 2) & (val <= 8) & (val == np.round(val))
        return _Table(val, level.gen[order], mask, order, is_exp, level.nconst[order])

    def _tree(self, level: int, raw: int) -> Tree:
        """The tree of build entry ``raw`` of ``level``."""
        key = (level, raw)
        t = self._tree_memo.get(key)
        if t is None:
            ref = self._levels[level].refs[raw]
            if level == 0:
                t = ref
            else:
                op, la, ia, lb, ib = ref
                t = (op, self._tree(la, ia), self._tree(lb, ib))
            self._tree_memo[key] = t
        return t

    # ------------------------------------------------------------------ meet in the middle
    def _root(self, r: int) -> _Front:
        """The one row needing the target with ``r`` operators."""
        lo, hi = self._interval()
        one, zero = _ONE, _ZERO
        return _Front(np.array([lo]), np.array([hi]), _ZERO_INT, r,
                      one, zero, zero, one, _FALSE, _ZERO_INT)

    def _step(self, F: _Front, side_level: int, codes: Sequence[int], child_r: int) -> _Front | None:
        """Rows of ``F`` combined with every fitting entry of table ``side_level``: for each
        code, the interval the other operand must lie in (all codes in one vectorised pass)."""
        S = self.tables[side_level]
        if not len(F.lo) or not len(S.val):
            return None
        ok, joined = self._fits(F.mask[:, None], S.mask[None, :])
        ri, ei = np.nonzero(ok)
        n = len(ri)
        if not n:
            return None
        nc = len(codes)
        self._charge(n * nc)
        s, lo, hi = S.val[ei], F.lo[ri], F.hi[ri]
        x = np.empty(n * nc)
        y = np.empty(n * nc)
        additive = []
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for k, code in enumerate(codes):
                sl = slice(k * n, (k + 1) * n)
                if code == _S_ADD_U:
                    x[sl], y[sl] = lo - s, hi - s
                elif code == _S_SUB_U:
                    x[sl], y[sl] = s - hi, s - lo
                elif code == _U_SUB_S:
                    x[sl], y[sl] = lo + s, hi + s
                elif code == _S_MUL_U:
                    x[sl], y[sl] = lo / s, hi / s
                elif code == _U_DIV_S:
                    x[sl], y[sl] = lo * s, hi * s
                elif code == _S_DIV_U:  # s / U in [lo, hi]: U between s/hi and s/lo
                    x[sl], y[sl] = s / hi, s / lo
                    bad = (lo <= 0) & (hi >= 0)
                    x[sl][bad] = np.nan
                else:  # U ** s in [lo, hi], s a constant integer exponent
                    inv = 1.0 / s
                    x[sl], y[sl] = np.maximum(lo, 0.0) ** inv, np.abs(hi) ** inv
                    bad = ~S.is_exp[ei] | (hi <= 0)
                    x[sl][bad] = np.nan
                if code in (_S_ADD_U, _S_SUB_U, _U_SUB_S):
                    additive.append(sl)
            l, h = np.minimum(x, y), np.maximum(x, y)
            # float margin: absolute for a difference, relative for a product/quotient/root
            pad = np.abs(l) + np.abs(h)
            if additive:
                big = np.abs(s) + np.abs(lo) + np.abs(hi)
                for sl in additive:
                    pad[sl] += big
            pad *= _PAD
            l -= pad
            h += pad
            keep = np.isfinite(l) & np.isfinite(h)
            if child_r >= 1 and not self._negative:
                keep &= h > 0  # a computed intermediate is positive
        idx = np.nonzero(keep)[0]
        if not len(idx):
            return None
        row = idx % n
        pr, si = ri[row], ei[row]
        code_arr = np.asarray(codes, np.int8)[idx // n]
        nconst = F.nconst[pr] + S.nconst[si]
        if not self._generic_paths:
            z = l[idx]
            return _Front(z, h[idx], joined[pr, si], child_r, z, z, z, z, z, nconst, F, pr,
                          side_level, si, code_arr)
        # compose the parent's Moebius map with this step's (U -> parent value)
        sg = S.gen[si]
        one, zero = np.ones(len(idx)), np.zeros(len(idx))
        mp, mq, mr, mt = one.copy(), zero.copy(), zero.copy(), one.copy()
        for code in codes:
            c = code_arr == code
            if code == _S_ADD_U:
                mq[c] = sg[c]
            elif code == _S_SUB_U:
                mp[c] = -1.0
                mq[c] = sg[c]
            elif code == _U_SUB_S:
                mq[c] = -sg[c]
            elif code == _S_MUL_U:
                mp[c] = sg[c]
            elif code == _U_DIV_S:
                mt[c] = sg[c]
            elif code == _S_DIV_U:
                mp[c], mq[c], mr[c], mt[c] = 0.0, sg[c], 1.0, 0.0
        ga, gb, gc, gd = F.ga[pr], F.gb[pr], F.gc[pr], F.gd[pr]
        na, nb = ga * mp + gb * mr, ga * mq + gb * mt
        nc_, nd = gc * mp + gd * mr, gc * mq + gd * mt
        norm = np.maximum(np.maximum(np.abs(na), np.abs(nb)), np.maximum(np.abs(nc_), np.abs(nd)))
        with np.errstate(divide="ignore", invalid="ignore"):
            na, nb, nc_, nd = na / norm, nb / norm, nc_ / norm, nd / norm
        pw = F.pw[pr] | (code_arr == _U_POW_S)
        return _Front(l[idx], h[idx], joined[pr, si], child_r, na, nb, nc_, nd, pw, nconst, F, pr,
                      side_level, si, code_arr)

    def _lookup(self, F: _Front, level: int, commutative: bool):
        """(rows, entries) of table ``level`` whose value lies in a row's interval and fits."""
        T = self.tables[level]
        if not len(F.lo) or not len(T.val):
            return None
        i0 = np.searchsorted(T.val, F.lo, "left")
        i1 = np.searchsorted(T.val, F.hi, "right")
        cnt = i1 - i0
        rows = np.nonzero(cnt > 0)[0]
        if not len(rows):
            return None
        c = cnt[rows]
        total = int(c.sum())
        self._charge(total)
        R = np.repeat(rows, c)
        E = np.repeat(i0[rows], c) + (np.arange(total) - np.repeat(np.cumsum(c) - c, c))
        ok, joined = self._fits(F.mask[R], T.mask[E])
        ok &= joined != 0  # a match uses a quantity
        if commutative:  # x op y with both from this table: one of the orders of + and *
            code = F.code[R]
            ok &= ~(((code == _S_ADD_U) | (code == _S_MUL_U)) & (E < F.side_idx[R]))
        sel = np.nonzero(ok)[0]
        if not len(sel):
            return None
        return R[sel], E[sel]

    def _decompose(self, F: _Front) -> Iterator[tuple]:
        """Every candidate ``(front, rows, level, entries)`` for ``F``'s rows, depth first.

        A row needing ``r`` operators is looked up in table ``r`` when that table is built;
        otherwise it is split as ``x op y`` with ``ops(x) + ops(y) = r - 1``: the smaller side
        comes from a table, the other is looked up or split again."""
        r = F.r
        if r < len(self.tables):
            hit = self._lookup(F, r, False)
            if hit is not None:
                yield F, hit[0], r, hit[1]
            return
        left = [c for c, o in _SIDE_LEFT_CODES if o in self.ops]
        right = [c for c, o in _SIDE_RIGHT_CODES if o in self.ops]
        for side in range((r - 1) // 2 + 1):
            child = r - 1 - side
            # side op child, and (when the sizes differ) child op side for - / ^ (+ and * of
            # that mirrored split are the same expressions)
            codes = left if side == child else left + right
            if side != 0:
                codes = [c for c in codes if c != _U_POW_S]
            if side > self._depth or not codes:
                continue
            self._ensure(side)
            G = self._step(F, side, codes, child)
            if G is None:
                continue
            if child < len(self.tables):
                hit = self._lookup(G, child, commutative=(side == child))
                if hit is not None:
                    yield G, hit[0], child, hit[1]
            else:
                yield from self._decompose(G)

    # ------------------------------------------------------------------ candidates
    def _candidate_tree(self, F: _Front, row: int, level: int, entry: int) -> Tree:
        t = self._tree(level, int(self.tables[level].raw[entry]))
        while F.parent is not None:
            side = self._tree(F.side_level, int(self.tables[F.side_level].raw[F.side_idx[row]]))
            op, side_first = _CODE_OPS[F.code[row]]
            t = (op, side, t) if side_first else (op, t, side)
            row = int(F.parent_row[row])
            F = F.parent
        return t

    def _accept(self, t: Tree, ops: int) -> Match | None:
        self.stats.candidates += 1
        v = exact_value(t, self.quantities, self.constants)
        if v is None:
            return None
        if v != self.target and not (self._tolerant and values_match(v, self.target, self.rel_tol)):
            return None
        key = fingerprint(t, self.cmods)
        if key is None:
            return None
        lv = leaves(t)
        uses = tuple(x for x in lv if x >= 0)
        return Match(t, v, ops, key, uses, len(lv) - len(uses), v == self.target)

    def _generic(self, F: _Front, rows: np.ndarray, level: int, entries: np.ndarray) -> np.ndarray:
        g = self.tables[level].gen[entries]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return (F.ga[rows] * g + F.gb[rows]) / (F.gc[rows] * g + F.gd[rows])

    # ------------------------------------------------------------------ driver
    def run(self, mode: str = "all") -> list[Match]:
        """The distinct matches under stop rule ``mode`` (first | minimal | all), sorted by
        operator count, constants, then tree; see :attr:`stats`."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        self._t0 = time.perf_counter()
        st = self.stats
        n = len(self.quantities)
        limit = _MAX_QUANTITIES_REUSE if self._reuse else _MAX_QUANTITIES
        found: dict[int, Match] = {}
        if n == 0 or n > limit:
            st.skipped = "no quantities" if n == 0 else f"{n} quantities (at most {limit})"
            return []
        self._tolerant = needs_tolerance(self.target, self.quantities)
        try:
            self._generic_paths = mode != "first"
            # Level 1 is built from level 2 on (level 3 in mode first, where splitting a
            # two-operator expression twice is cheaper than the table it would use once).
            lag = 2 if mode == "first" else 1
            for k in range(self.max_ops + 1):
                if k <= 1:  # a handful of leaves and pairs: plain Python beats numpy here
                    self._search_small(k, mode, found)
                else:
                    if not hasattr(self, "tables"):
                        self._build_level0()
                    self._ensure(min(k - lag, self._depth))
                    self._search_level(k, mode, found)
                st.levels_done = k
                if found and mode == "minimal":
                    break
        except _Done:
            pass
        except _BudgetHit:
            pass
        st.time_ms = (time.perf_counter() - self._t0) * 1000
        out = sorted(found.values(), key=_order)
        if out:
            st.found_level = out[0].ops
        return out

    def _interval(self) -> tuple[float, float]:
        """The float interval a match's value must lie in (the target's tolerance, or a float
        margin where only the exact value matches)."""
        tf = _float(self.target)
        if self._tolerant:
            tol = self.rel_tol * abs(tf) / (1 - self.rel_tol) + 1e-9
        else:
            tol = _PAD * abs(tf) + 1e-12
        return tf - tol, tf + tol

    def _search_small(self, k: int, mode: str, found: dict[int, Match]) -> None:
        """Levels 0 and 1 in plain Python: a quantity alone, then every ``x op y`` of two
        leaves that uses a quantity, most natural first (two quantities before a quantity and
        a constant). The same candidates the vectorised path would give, without its fixed
        cost (most problems end here)."""
        lo, hi = self._interval()
        qs = [(_float(v), i) for i, v in enumerate(self.quantities) if v]
        cands: list = []
        if k == 0:
            self._charge(len(qs))
            cands = [i for v, i in qs if lo <= v <= hi]
        else:
            cs = [(f, ~j) for j, (v, f) in enumerate(zip(self.constants, self._cfloats))
                  if v]
            pairs = [(a, b) for n, a in enumerate(qs) for b in qs[n + 1:]]
            if self._reuse:
                pairs += [(a, a) for a in qs]
            pairs += [(a, c) for a in qs for c in cs]
            ops = self.ops
            add, sub, mul, div = "+" in ops, "-" in ops, "*" in ops, "/" in ops
            self._charge(len(pairs) * 6)
            for (va, a), (vb, b) in pairs:
                if add and lo <= va + vb <= hi:
                    cands.append(("+", a, b))
                if mul and lo <= va * vb <= hi:
                    cands.append(("*", a, b))
                if a == b:  # x - x, x / x: identities
                    continue
                if sub:
                    if lo <= va - vb <= hi:
                        cands.append(("-", a, b))
                    if lo <= vb - va <= hi:
                        cands.append(("-", b, a))
                if div:
                    if lo <= va / vb <= hi:
                        cands.append(("/", a, b))
                    if lo <= vb / va <= hi:
                        cands.append(("/", b, a))
            if "^" in ops:  # x ^ e, e a constant integer exponent 2..8
                for v, i in qs:
                    for f, e in cs:
                        if f in _EXPONENTS and abs(v) < 1e9 and lo <= v ** f <= hi:
                            cands.append(("^", i, e))
        for t in cands:
            m = self._accept(t, k)
            if m is None:
                continue
            if mode == "first":
                found[m.key] = m
                raise _Done
            old = found.get(m.key)
            if old is None or _order(m) < _order(old):
                found[m.key] = m

    def _search_level(self, k: int, mode: str, found: dict[int, Match]) -> None:
        batches = []
        for F, rows, level, entries in self._decompose(self._root(k)):
            if mode == "first":  # stop at the first match, trying the most natural first:
                # more quantities, fewer constants
                T = self.tables[level]
                used = np.bitwise_count(F.mask[rows] | T.mask[entries])
                order = np.lexsort((F.nconst[rows] + T.nconst[entries], -used.astype(np.int64)))
                for row, entry in zip(rows[order].tolist(), entries[order].tolist()):
                    m = self._accept(self._candidate_tree(F, row, level, entry), k)
                    if m is not None:
                        found[m.key] = m
                        raise _Done
                continue
            T = self.tables[level]
            cost = F.nconst[rows] + T.nconst[entries]  # constants, and repeats weigh more:
            if self._reuse:
                m = F.mask[rows] + T.mask[entries]
                cost = cost + 1000 * np.bitwise_count((m >> 1) & self._low).astype(np.int64)
            batches.append((F, rows, level, entries, self._generic(F, rows, level, entries), cost))
        if not batches:
            return
        # One exact check per group of candidates that are the same function (equal generic
        # values), on its simplest member: fewest repeated quantities, then constants.
        gens = np.concatenate([b[4] for b in batches])
        cost = np.concatenate([b[5] for b in batches])
        which = np.concatenate([np.full(len(b[1]), i) for i, b in enumerate(batches)])
        pos = np.concatenate([np.arange(len(b[1])) for b in batches])
        pw = np.concatenate([b[0].pw[b[1]] for b in batches])
        order = np.argsort(gens, kind="stable")
        sg = gens[order]
        new = np.ones(len(order), bool)
        with np.errstate(invalid="ignore"):
            new[1:] = ~(np.abs(sg[1:] - sg[:-1]) <= _SAME * np.maximum(np.abs(sg[1:]), np.abs(sg[:-1])))
        new |= pw[order] | ~np.isfinite(sg)
        group = np.cumsum(new)
        best = np.lexsort((cost[order], group))  # by group, cheapest first
        head = np.ones(len(best), bool)
        head[1:] = group[best[1:]] != group[best[:-1]]
        for n_checked, i in enumerate(order[best[head]].tolist()):
            if n_checked % 64 == 63:
                self._charge(0)  # the time budget also bounds the exact checks
            F, rows, level, entries = batches[which[i]][:4]
            p = pos[i]
            m = self._accept(self._candidate_tree(F, int(rows[p]), level, int(entries[p])), k)
            if m is None:
                continue
            old = found.get(m.key)
            if old is None or _order(m) < _order(old):
                found[m.key] = m


def _order(m: Match) -> tuple:
    repeats = len(m.uses) - len(set(m.uses))
    return (m.ops, not m.exact, repeats, m.n_constants, repr(m.tree))


def enumerate_distinct(
    quantities: Sequence[Fraction],
    constants: Sequence[Fraction] = (),
    max_ops: int = 2,
    ops: str = "+-*/",
    allow_negative: bool = True,
) -> dict[int, tuple[Tree, int]]:
    """Every distinct expression with at most ``max_ops`` operators that uses a quantity:
    fingerprint -> (tree, operator count). The search's own tables, fully built; for small
    inputs (tests, inspection)."""
    s = Search(quantities, constants, Fraction(1), max_ops=max_ops, ops=ops,
               allow_negative=allow_negative)
    s._build_level0()
    s._ensure(max_ops)
    out: dict[int, tuple[Tree, int]] = {}
    for k, level in enumerate(s._levels):
        for raw, mask in enumerate(level.mask.tolist()):
            if not mask:
                continue
            t = s._tree(k, raw)
            key = fingerprint(t, s.cmods)
            if key is not None and (key not in out or out[key][1] > k):
                out[key] = (t, k)
    return out
