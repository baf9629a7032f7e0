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

* :func:`teacher_problems` -- the new problems a language model wrote (``fdd_similar`` /
  ``fdd_harder`` Rationale rows) -> Problem rows without an answer, with the reasons the others
  were set aside (unusable, no quantities, a known problem, written twice).
* :func:`self_consistent_answers` -- the teacher's sampled solutions of those problems -> the
  problems whose majority answer has enough agreement, with that answer and the rule.

Labels are masked equations over ``N0…`` as the search and refinement write them.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping, Sequence

__all__ = ["Augmentation", "Consensus", "self_consistent_answers", "similar_problems",
           "split_easy_hard", "teacher_problems"]


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


_ID_MARK = {"fdd_similar": "s", "fdd_harder": "h"}  # in a new problem's id


def teacher_problems(rows: Sequence[Mapping[str, Any]], sources: Mapping[str, Mapping[str, Any]],
                     round_no: int, *, avoid: Collection[str] = ()
                     ) -> tuple[list[dict[str, Any]], Counter]:
    """Problem rows (split ``fdd``, no answer yet) from a teacher's new-problem Rationale rows
    (``rows``: strategy ``fdd_similar`` / ``fdd_harder``, the problem's text in
    ``meta.new_question``; ``id`` the source problem's, a key of ``sources``), in row order,
    and the count of rows set aside by reason: ``unusable: <why>`` (the verifier's reason),
    ``no_quantities`` (nothing to compute with), ``seen_or_evaluation_problem`` (its
    normalized text is in ``avoid`` -- training, evaluation and earlier new problems -- or was
    written before in these rows). A new problem's id is
    ``<source id>~r<round><s|h><sample>`` (s: similar, h: harder); ``meta`` records the teacher, the strategy, the
    source problem and the model."""
    from distill.data.decontam import normalize_question
    from distill.records import RecordError, make_problem, meta_of

    seen = set(avoid)
    out: list[dict[str, Any]] = []
    rejected: Counter = Counter()
    for row in sorted(rows, key=lambda r: (r["strategy"], r["id"], r["sample_idx"])):
        question = meta_of(row).get("new_question")
        if row["verdict"] != "correct" or not question:
            rejected[f"unusable: {row.get('error') or 'no question'}"] += 1
            continue
        key = normalize_question(question)
        if key in seen:
            rejected["seen_or_evaluation_problem"] += 1
            continue
        source = sources[row["id"]]
        pid = f"{row['id']}~r{round_no}{_ID_MARK[row['strategy']]}{row['sample_idx']}"
        try:
            problem = make_problem(
                dataset=str(source.get("dataset", "")), split="fdd", source_id=pid,
                question=question, answer=None, lang=source.get("lang"),
                meta={"teacher": "llm", "strategy": row["strategy"], "source_id": row["id"],
                      "model": row["source"]})
        except RecordError as e:
            rejected[f"unusable: {e}"] += 1
            continue
        if not problem["quantities"]:
            rejected["no_quantities"] += 1
            continue
        problem["id"] = pid
        seen.add(key)
        out.append(problem)
    return out, rejected


@dataclass(frozen=True)
class Consensus:
    """A new problem's label by self-consistency: the majority ``answer``, its ``votes`` out of
    ``samples`` solutions asked for."""

    answer: str
    votes: int
    samples: int

    @property
    def agreement(self) -> float:
        return self.votes / self.samples

    def rule(self, min_agreement: float) -> str:
        return (f"teacher self-consistency: {self.votes} of {self.samples} solutions give "
                f"{self.answer} (at least {min_agreement:g} needed)")


def self_consistent_answers(rows: Sequence[Mapping[str, Any]], samples: int,
                            min_agreement: float) -> tuple[dict[str, Consensus], Counter]:
    """Problem id -> :class:`Consensus` for the problems whose solutions (``rows``: Rationale
    rows of a problem without a gold, ``predicted`` the answer each gives, None when it gave
    none) agree: the majority answer (:func:`distill.evaluate.report.majority_answer`, the one
    grader) is a number and at least ``min_agreement`` of the ``samples`` asked for give it (a
    solution that failed or was never made counts against it). The others are counted by
    reason: ``no_answer`` (no solution gave a number), ``too_little_agreement``."""
    from distill.evaluate.report import majority_answer
    from distill.quantities import canonical, parse_answer

    by_id: dict[str, list[str | None]] = {}
    for row in rows:
        value = parse_answer(row["predicted"]).value if row.get("predicted") else None
        by_id.setdefault(row["id"], []).append(canonical(value) if value is not None else None)
    labelled: dict[str, Consensus] = {}
    rejected: Counter = Counter()
    for pid, answers in by_id.items():
        voted, votes = majority_answer(answers)
        if voted is None:
            rejected["no_answer"] += 1
        elif votes < min_agreement * samples - 1e-9:
            rejected["too_little_agreement"] += 1
        else:
            labelled[pid] = Consensus(voted, votes, samples)
    return labelled, rejected
