"""Ranking the matches of one problem, and the dataset-level template prior.

Takes a problem's distinct matches (:class:`distill.search.engine.Match`) and gives them
ordered by a score, with the score and its features. A match that hits the answer by
coincidence is common (with four constants and three operators almost any answer is
reachable), so the score prefers, with the weights of :class:`RankWeights`:

* using every quantity (``unused``: quantities left out -- a soft penalty, distractor numbers
  exist);
* fewer operators (``ops``), fewer constants (``constants``), no repeated quantity
  (``repeats``), an exact value over one within tolerance (``inexact``);
* quantities in text order (``inversions``: pairs of quantities that appear in the canonical
  form in the opposite order of the text, as in ``N1 - N0``);
* templates that solve other problems of the dataset (``prior``): the log of how many other
  problems the same masked template (the expression over ``N0..Nk``, up to equivalence) solves,
  learned in a first pass over the dataset (:class:`TemplatePrior`), plus the same for the
  *shape* (the template with its quantities renumbered in order of appearance, so ``N0*N1`` and
  ``N1*N2`` share a shape).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterable, Mapping, Sequence

from pydantic import Field

from distill.configbase import StrictModel
from distill.search.engine import Match
from distill.search.expr import (
    Tree,
    constant_residues,
    fingerprint,
    nf_to_tree,
    normal_form,
)

__all__ = ["RankWeights", "Features", "Ranked", "features", "rank", "TemplatePrior", "shape_key"]


class RankWeights(StrictModel):
    """Weights of the ranking score (higher score ranks first). Penalties are subtracted per
    unit of their feature; the prior weights multiply log-counts and are added."""


    unused: float = Field(1.5, ge=0, description="Penalty per quantity the match leaves unused.")
    ops: float = Field(0.5, ge=0, description="Penalty per operator.")
    constants: float = Field(1.2, ge=0, description="Penalty per constant leaf.")
    repeats: float = Field(1.0, ge=0, description="Penalty per repeated use of a quantity (reuse).")
    inexact: float = Field(3.0, ge=0, description="Penalty for a value only within tolerance.")
    inversions: float = Field(0.1, ge=0, description="Penalty per pair of quantities out of text order.")
    prior: float = Field(1.0, ge=0, description="Weight of log(1 + other problems the template solves).")
    shape_prior: float = Field(0.6, ge=0, description="Weight of log(1 + other problems the shape solves).")
    temperature: float = Field(
        0.5, gt=0, description="Softmax temperature turning scores into the per-problem weights "
        "that the prior counts (each problem spreads one unit over its matches)."
    )


@dataclass(frozen=True)
class Features:
    unused: int
    ops: int
    constants: int
    repeats: int
    inexact: int
    inversions: int
    template: int  # fingerprint of the template (= the match's key)
    shape: int  # fingerprint of the shape

    def base_score(self, w: RankWeights) -> float:
        return -(
            w.unused * self.unused
            + w.ops * self.ops
            + w.constants * self.constants
            + w.repeats * self.repeats
            + w.inexact * self.inexact
            + w.inversions * self.inversions
        )


@dataclass
class Ranked:
    """A match with its score, features and prior counts (leave-one-out)."""

    match: Match
    score: float
    features: Features
    template_count: float = 0.0
    shape_count: float = 0.0

    def to_dict(self) -> dict:
        f = self.features
        return {
            "score": round(self.score, 6),
            "unused": f.unused,
            "ops": f.ops,
            "constants": f.constants,
            "repeats": f.repeats,
            "inexact": f.inexact,
            "inversions": f.inversions,
            "template_count": round(self.template_count, 4),
            "shape_count": round(self.shape_count, 4),
        }


def shape_key(
    tree: Tree, cmods: Sequence[int], cvals: Sequence[Fraction], canon: Tree | None = None
) -> int:
    """The template with its quantities renumbered 0, 1, ... in order of appearance in the
    canonical form: ``N1 * N2`` and ``N0 * N1`` share a shape, ``N1 - N0`` and ``N0 - N1``
    do too (the ``inversions`` feature tells them apart)."""
    if canon is None:
        canon = nf_to_tree(normal_form(tree, cvals))
    mapping: dict[int, int] = {}

    def rename(t: Tree) -> Tree:
        if t.__class__ is int:
            if t < 0:
                return t
            if t not in mapping:
                mapping[t] = len(mapping)
            return mapping[t]
        return (t[0], rename(t[1]), rename(t[2]))

    key = fingerprint(rename(canon), cmods)
    return key if key is not None else 0


def _inversions(canon: Tree) -> int:
    order: list[int] = []

    def walk(t: Tree) -> None:
        if t.__class__ is int:
            if t >= 0:
                order.append(t)
        else:
            walk(t[1])
            walk(t[2])

    walk(canon)
    return sum(1 for i in range(len(order)) for j in range(i + 1, len(order)) if order[i] > order[j])


def features(
    m: Match, n_quantities: int, cvals: Sequence[Fraction], cmods: Sequence[int] | None = None
) -> Features:
    """The ranking features of one match (``cmods``: the constants' residues, if at hand)."""
    cmods = cmods if cmods is not None else constant_residues(cvals)
    canon = nf_to_tree(normal_form(m.tree, cvals))
    distinct = len(set(m.uses))
    return Features(
        unused=n_quantities - distinct,
        ops=m.ops,
        constants=m.n_constants,
        repeats=len(m.uses) - distinct,
        inexact=0 if m.exact else 1,
        inversions=_inversions(canon),
        template=m.key,
        shape=shape_key(m.tree, cmods, cvals, canon),
    )


def _softmax(scores: Sequence[float], temperature: float) -> list[float]:
    if not scores:
        return []
    top = max(scores)
    ex = [math.exp((s - top) / temperature) for s in scores]
    z = sum(ex)
    return [e / z for e in ex]


@dataclass
class TemplatePrior:
    """How many problems of a dataset each template (and shape) solves, as soft counts: each
    problem spreads one unit over its matches (softmax of their scores), so a template that is
    only one of fifty coincidental matches counts little. Counts exclude the problem being
    ranked (leave-one-out): ``count(t) - own share``."""

    templates: dict[int, float] = field(default_factory=dict)
    shapes: dict[int, float] = field(default_factory=dict)
    problems: int = 0

    @staticmethod
    def shares(feats: Sequence[Features], scores: Sequence[float], w: RankWeights) -> list[float]:
        return _softmax(scores, w.temperature)

    def add(self, feats: Sequence[Features], shares: Sequence[float]) -> None:
        if not feats:
            return
        self.problems += 1
        for f, s in zip(feats, shares):
            self.templates[f.template] = self.templates.get(f.template, 0.0) + s
            self.shapes[f.shape] = self.shapes.get(f.shape, 0.0) + s

    def merge(self, other: TemplatePrior) -> None:
        for k, v in other.templates.items():
            self.templates[k] = self.templates.get(k, 0.0) + v
        for k, v in other.shapes.items():
            self.shapes[k] = self.shapes.get(k, 0.0) + v
        self.problems += other.problems

    def to_contributions(self) -> dict:
        return {"templates": self.templates, "shapes": self.shapes, "problems": self.problems}

    @staticmethod
    def from_contributions(items: Iterable[Mapping]) -> TemplatePrior:
        out = TemplatePrior()
        for c in items:
            for k, v in c["templates"].items():
                out.templates[int(k)] = out.templates.get(int(k), 0.0) + v
            for k, v in c["shapes"].items():
                out.shapes[int(k)] = out.shapes.get(int(k), 0.0) + v
            out.problems += c["problems"]
        return out

    def top(self, n: int = 10) -> list[tuple[int, float]]:
        return sorted(self.templates.items(), key=lambda kv: -kv[1])[:n]


def rank(
    matches: Sequence[Match],
    n_quantities: int,
    cvals: Sequence[Fraction],
    weights: RankWeights,
    prior: TemplatePrior | None = None,
    feats: Sequence[Features] | None = None,
) -> list[Ranked]:
    """The matches ordered by score (best first; ties keep the engine's order: fewer
    operators, exact, fewer constants). With a ``prior`` the problem's own share of it (as
    the first pass computed it from the same matches) is taken out first."""
    cmods = constant_residues(cvals)
    feats = list(feats) if feats is not None else [features(m, n_quantities, cvals, cmods) for m in matches]
    base = [f.base_score(weights) for f in feats]
    own_t: dict[int, float] = defaultdict(float)
    own_s: dict[int, float] = defaultdict(float)
    if prior is not None and prior.problems:
        for f, s in zip(feats, TemplatePrior.shares(feats, base, weights)):
            own_t[f.template] += s
            own_s[f.shape] += s
    out = []
    for m, f, b in zip(matches, feats, base):
        tc = sc = 0.0
        if prior is not None and prior.problems:
            tc = max(0.0, prior.templates.get(f.template, 0.0) - own_t[f.template])
            sc = max(0.0, prior.shapes.get(f.shape, 0.0) - own_s[f.shape])
        score = b + weights.prior * math.log1p(tc) + weights.shape_prior * math.log1p(sc)
        out.append(Ranked(m, score, f, tc, sc))
    order = sorted(range(len(out)), key=lambda i: -out[i].score)  # stable: engine order on ties
    return [out[i] for i in order]
