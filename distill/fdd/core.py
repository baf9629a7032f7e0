"""FDD's feedback and augmentation, pure: which training problems the student finds easy or
hard, and new problems similar to the hard ones, labelled.

* :func:`split_easy_hard` -- prediction rows (``k`` samples per problem, as
  :func:`distill.evaluate.infer.prediction_rows` gives them) -> easy ids (the majority answer is
  right: :func:`distill.evaluate.report.majority_answer`, the one grader) and hard ids.
* :func:`similar_problems` -- for each hard problem whose label is verified, ``variants`` new
  problems from the offline teacher (:func:`distill.generate.perturb.perturb_problem`), each
  labelled with the source's equation (its answer was recomputed from it), none equal to an
  evaluation problem, a training problem or another new one; with the reasons the others
  were set aside.

Labels are masked equations over ``N0…`` as the search and refinement write them.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping, Sequence

__all__ = ["Augmentation", "similar_problems", "split_easy_hard"]


def split_easy_hard(prediction_rows: Sequence[Mapping[str, Any]]
                    ) -> tuple[list[str], list[str]]:
    """(easy ids, hard ids) in first-seen order: a problem is easy when the majority answer of
    its samples grades equal to its gold."""
    from distill.evaluate.report import majority_answer
    from distill.grading import answers_match

    samples: dict[str, list[Mapping[str, Any]]] = {}
    for row in prediction_rows:
        samples.setdefault(row["id"], []).append(row)
    easy, hard = [], []
    for pid, rows in samples.items():
        voted, _ = majority_answer([r["predicted"] for r in rows])
        solved = voted is not None and answers_match(voted, rows[0]["gold"])
        (easy if solved else hard).append(pid)
    return easy, hard


@dataclass
class Augmentation:
    """New problems (Problem rows, split ``fdd``), their labels, and what was set aside."""

    problems: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    rejected: Counter = field(default_factory=Counter)
    sources: int = 0  # hard problems that had a label to vary


def similar_problems(hard: Sequence[Mapping[str, Any]], labels: Mapping[str, Sequence[str]],
                     variants: int, rng: random.Random, *,
                     avoid: Collection[str] = ()) -> Augmentation:
    """Up to ``variants`` similar problems per hard problem (see module). ``avoid``: normalized
    questions never to produce (evaluation and training problems')."""
    from distill.data.decontam import normalize_question
    from distill.generate.perturb import perturb_problem

    out = Augmentation()
    seen = set(avoid)
    for problem in hard:
        label = (labels.get(problem["id"]) or [None])[0]
        if not label:
            out.rejected["no_label"] += 1
            continue
        out.sources += 1
        try:
            result = perturb_problem(problem, label, variants, rng, avoid=seen)
        except ValueError:
            out.rejected["label_not_verified"] += 1
            continue
        out.rejected.update(result.rejected)
        for row in result.problems:
            seen.add(normalize_question(row["question"]))
            out.problems.append(row)
            out.labels[row["id"]] = label
    return out
