"""One FDD round on Ray: the student's feedback on every training problem, similar problems
for the ones it fails (the offline ``perturb`` teacher), retrain on everything, evaluate.

Pieces shared with refinement (:mod:`distill.refine.stage`): sampling through the evaluation's
actor pool, retraining into the round's own Ray Train run and evaluating, atomic writes.

Layout of a round's folder (``<run>/fdd_<r>/``)::

    feedback.jsonl      one row per training problem (the run's and earlier rounds' new ones):
                        id, the k outputs, the majority answer, easy or hard
    new_problems.jsonl  the round's new problems (Problem rows, split ``fdd``; ``meta`` records
                        the teacher, the source problem and the label rule)
    labels.json         problem id -> labels, the new problems' included (the next round's)
    examples.parquet    the SFT examples of every problem so far
    train/, evaluate/   the retrained student and its report
    summary.json        the round's figures (also the manifest's counts)

Resumable like a refinement round: each file is written once, training resumes.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from distill.fdd.core import similar_problems, split_easy_hard
from distill.fileio import read_jsonl, write_atomic, write_jsonl

__all__ = ["fdd_round", "new_problems_of"]

NEW_PROBLEMS = "new_problems.jsonl"


def new_problems_of(round_dir: Path) -> list[dict[str, Any]]:
    """The new problems an earlier round wrote."""
    path = round_dir / NEW_PROBLEMS
    return read_jsonl(path) if path.is_file() else []


def fdd_round(
    round_no: int,
    problems: Sequence[Mapping[str, Any]],
    eval_sets: Mapping[str, Sequence[Mapping[str, Any]]],
    labels: Mapping[str, Sequence[str]],
    student: str | Path,
    *,
    pipeline: Any,
    run_dir: Path,
    out: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Round ``round_no`` of FDD under ``out``; returns its summary.

    ``problems``: every training problem so far (the run's and earlier rounds' new ones);
    ``labels``: their labels; ``student``: the student giving the feedback (the last one
    trained); ``pipeline``: the run's :class:`~distill.config.PipelineConfig`."""
    from distill.data.decontam import normalize_question
    from distill.evaluate.infer import prediction_rows
    from distill.refine.stage import relabel_and_retrain, sample_on_ray

    cfg = pipeline.fdd
    target = pipeline.train.target
    if target != "equation_prefix":
        raise ValueError(f"fdd: the perturb teacher labels equation_prefix students "
                         f"(train.target is {target!r})")
    problems = list(problems)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    # 1. feedback: k samples of every training problem, easy or hard (written once)
    feedback_file = out / "feedback.jsonl"
    if feedback_file.is_file():
        feedback = read_jsonl(feedback_file)
    else:
        log(f"[fdd_{round_no}] feedback on {len(problems)} problems, {cfg.samples} samples each")
        outputs = sample_on_ray(student, problems, cfg.samples, cfg.temperature, cfg.top_p,
                                pipeline.seed + 1000 + round_no, pipeline=pipeline)
        easy, _ = split_easy_hard(prediction_rows(problems, outputs, target))
        easy_set = set(easy)
        feedback = [{"id": p["id"], "outputs": outs, "easy": p["id"] in easy_set}
                    for p, outs in zip(problems, outputs)]
        write_jsonl(feedback_file, feedback)
    hard_ids = {r["id"] for r in feedback if not r["easy"]}

    # 2. similar problems for the hard ones (written once), labelled with their sources'
    new_file = out / NEW_PROBLEMS
    if new_file.is_file():
        new = new_problems_of(out)
        rejected: dict[str, int] = json.loads((out / "rejected.json").read_text())
    else:
        avoid = {normalize_question(p["question"]) for p in problems}
        avoid |= {normalize_question(p["question"]) for rows in eval_sets.values() for p in rows}
        aug = similar_problems([p for p in problems if p["id"] in hard_ids], labels,
                               cfg.variants, random.Random(pipeline.seed * 1009 + round_no),
                               avoid=avoid)
        new = [dict(p, fdd_label=aug.labels[p["id"]]) for p in aug.problems]
        rejected = dict(aug.rejected)
        write_atomic(out / "rejected.json", json.dumps(rejected, indent=1, sort_keys=True))
        write_jsonl(new_file, new)
    all_labels = {pid: list(v) for pid, v in labels.items()}
    all_labels.update({p["id"]: [p["fdd_label"]] for p in new})

    # 3. retrain on everything, evaluate
    trained, report = relabel_and_retrain(
        f"fdd_{round_no}", problems + new, all_labels, cfg.epochs, eval_sets, pipeline=pipeline,
        run_dir=run_dir, out=out, log=log, start_from=student if cfg.start == "last" else None)
    summary = {
        "round": round_no, "problems": len(problems),
        "easy": len(feedback) - len(hard_ids), "hard": len(hard_ids),
        "generated": len(new), "rejected": rejected,
        "accuracy": report["accuracy"], "correct": report["correct"], "n": report["n"],
        "per_dataset": report["per_dataset"],
        "checkpoint_dir": trained["checkpoint_dir"], "final_loss": trained["final_loss"],
        "seconds": round(time.perf_counter() - t0, 3),
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False))
    log(f"[fdd_{round_no}] {summary['easy']} easy, {summary['hard']} hard, {len(new)} new "
        f"problems; accuracy {report['accuracy']:.2%} ({report['correct']}/{report['n']})")
    return summary
