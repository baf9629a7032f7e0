"""FLTT refinement, the pure part: the failure pool, candidates read and accepted, labels merged.

* :func:`doubtful_reasons` -- why a problem's search label is doubtful (many matches, a small
  ranking margin, a quantity left unused; thresholds in :class:`RefineConfig`).
* :func:`failure_pool` -- training problems with no label, or a doubtful one.
* :func:`accepted_labels` -- a problem's k decoded candidates -> the labels among them that
  parse, use only the problem's quantities and the allowed constants, and give its answer
  (:func:`distill.evaluate.infer.equation_answer` and :func:`distill.grading.answers_match`,
  the evaluation's own reading and grading), with how often each was sampled.
* :func:`choose_label` -- the accepted label kept (most sampled; ties: fewer operators, then
  text order) when it reaches ``min_votes``.
* :func:`rescore_candidates`, :func:`most_likely` -- with ``rescore``: the labels the middle
  model ranks for a problem (its current ones and the search's matches) and the one it finds
  most likely (the model's scores come from :func:`distill.evaluate.infer.score_targets`).
* :func:`merge_labels` -- labels after a round, by ``rule`` (replace or add).
* :func:`same_function` -- whether two labels are the same function of the quantities (at
  random points): how a new label is compared with the gold equation where one exists.

Labels are masked equations as the search writes them (``x = N0 + N1 * N2``); a problem's
labels are a list (one, or two with ``rule: add``).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from fractions import Fraction
from typing import Any, Mapping, Sequence

from distill.equations import (
    Equation,
    EquationError,
    literal_numbers,
    operator_count,
    parse,
    parse_prefix,
    to_infix,
    value_of,
)
from distill.records import meta_of
from distill.refine.config import RefineConfig

__all__ = ["accepted_labels", "choose_label", "doubtful_reasons", "failure_pool",
           "label_of_output", "merge_labels", "most_likely", "rescore_candidates",
           "same_function"]

UNLABELLED = "unlabelled"


def _ranked_matches(rationales: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A problem's correct search rows, best first (the search's rank is ``sample_idx``)."""
    return sorted((r for r in rationales if r.get("verdict") == "correct"),
                  key=lambda r: r["sample_idx"])


def doubtful_reasons(rationales: Sequence[Mapping[str, Any]], config: RefineConfig) -> list[str]:
    """Why the label the search gave (its correct rows, ranked by ``sample_idx``) is doubtful:
    ``many_matches``, ``small_margin``, ``unused_quantity``; [] when it is not (or when the
    rows carry no search ranking)."""
    ranked = _ranked_matches(rationales)
    if not ranked:
        return []
    best = meta_of(ranked[0])
    reasons = []
    matches = best.get("n_matches")
    if config.doubtful_matches is not None and matches is not None \
            and matches >= config.doubtful_matches:
        reasons.append("many_matches")
    if config.doubtful_margin is not None and len(ranked) > 1:
        second = meta_of(ranked[1])
        if best.get("score") is not None and second.get("score") is not None \
                and best["score"] - second["score"] < config.doubtful_margin:
            reasons.append("small_margin")
    if config.doubtful_unused and (best.get("features") or {}).get("unused", 0) > 0:
        reasons.append("unused_quantity")
    return reasons


def failure_pool(problems: Sequence[Mapping[str, Any]], labels: Mapping[str, Sequence[str]],
                 rationales: Sequence[Mapping[str, Any]], config: RefineConfig
                 ) -> dict[str, list[str]]:
    """Problem id -> why it is in the pool (``unlabelled``, or :func:`doubtful_reasons`), for
    the problems with no label in ``labels`` or a doubtful search label; in problem order."""
    by_id: dict[str, list[Mapping[str, Any]]] = {}
    for r in rationales:
        by_id.setdefault(r["id"], []).append(r)
    pool: dict[str, list[str]] = {}
    for p in problems:
        if not labels.get(p["id"]):
            pool[p["id"]] = [UNLABELLED]
            continue
        reasons = doubtful_reasons(by_id.get(p["id"], []), config)
        if reasons:
            pool[p["id"]] = reasons
    return pool


def label_of_output(output: str, problem: Mapping[str, Any],
                    constants: Sequence[str]) -> str | None:
    """The label a prefix candidate gives for ``problem`` (``x = <infix>``), or None when it
    does not parse, names a quantity the problem lacks, uses a number that is not an allowed
    constant, or does not give the problem's answer."""
    from distill.evaluate.infer import equation_answer
    from distill.grading import answers_match
    from distill.quantities import parse_number

    answer, error = equation_answer(output, problem["quantities"], "prefix")
    if error is not None or not answers_match(answer, problem.get("answer")):
        return None
    tree = parse_prefix(output)
    allowed = {parse_number(c) for c in constants}
    if any(lit.value not in allowed for lit in literal_numbers(tree)):
        return None
    return to_infix(tree) if isinstance(tree, Equation) else f"x = {to_infix(tree)}"


def accepted_labels(outputs: Sequence[str], problem: Mapping[str, Any],
                    constants: Sequence[str]) -> Counter:
    """label -> how many of ``outputs`` (the k candidates) give it (:func:`label_of_output`)."""
    votes: Counter = Counter()
    for out in outputs:
        label = label_of_output(out, problem, constants)
        if label is not None:
            votes[label] += 1
    return votes


def rescore_candidates(current: Sequence[str], rationales: Sequence[Mapping[str, Any]]
                       ) -> list[str]:
    """The labels the middle model ranks for one problem: its ``current`` labels, then the
    masked equations of the search's correct rows in rank order (``sample_idx``), each once;
    [] when there are fewer than two (nothing to choose)."""
    matches = [r["masked_equation"] for r in _ranked_matches(rationales)
               if r.get("masked_equation")]
    out = list(dict.fromkeys([*current, *matches]))
    return out if len(out) > 1 else []


def most_likely(candidates: Sequence[str], nll: Sequence[float]) -> str | None:
    """The candidate with the lowest negative log-likelihood (the first on a tie), or None
    when the model can write none of them (every nll infinite)."""
    if len(candidates) != len(nll):
        raise ValueError(f"{len(nll)} scores for {len(candidates)} candidates")
    best = min(range(len(nll)), key=lambda i: (nll[i], i), default=None)
    return None if best is None or math.isinf(nll[best]) else candidates[best]


def _ops(label: str) -> int:
    try:
        return operator_count(label)
    except EquationError:
        return 1 << 30


def choose_label(votes: Counter, min_votes: int) -> str | None:
    """The most sampled accepted label (ties: fewer operators, then text), if it has
    ``min_votes``."""
    if not votes:
        return None
    label = min(votes, key=lambda lab: (-votes[lab], _ops(lab), lab))
    return label if votes[label] >= min_votes else None


def merge_labels(labels: Mapping[str, Sequence[str]], chosen: Mapping[str, str],
                 rule: str) -> tuple[dict[str, list[str]], int]:
    """Labels after a round and how many problems' labels changed. ``replace``: the chosen
    label becomes the problem's only one; ``add``: it joins the first label (at most two)."""
    merged = {k: list(v) for k, v in labels.items()}
    changed = 0
    for pid, label in chosen.items():
        old = merged.get(pid, [])
        new = [label] if rule == "replace" or not old else [old[0], label]
        new = list(dict.fromkeys(new))  # a label chosen again is not added twice
        if new != old:
            changed += 1
        merged[pid] = new
    return merged, changed


def same_function(a: str, b: str, n_quantities: int, trials: int = 3, seed: int = 0) -> bool:
    """Whether labels ``a`` and ``b`` (over ``N0..``) give the same value at ``trials`` random
    points (positive rationals; an evaluation error on either side means no)."""
    rng = random.Random(seed)
    try:
        ta, tb = parse(a), parse(b)
    except EquationError:
        return False
    for _ in range(trials):
        point = {f"N{i}": Fraction(rng.randint(2, 97), rng.randint(1, 7))
                 for i in range(max(1, n_quantities))}
        try:
            if value_of(ta, point) != value_of(tb, point):
                return False
        except EquationError:
            return False
    return True
