"""One FDD round on Ray: the student's feedback on every training problem, similar problems
for the ones it fails (the offline ``perturb`` teacher), retrain on everything, evaluate.

Pieces shared with refinement (:mod:`distill.refine.stage`): sampling through the evaluation's
actor pool, retraining into the round's own Ray Train run and evaluating, atomic writes.

Layout of a round's folder (``<run>/fdd_<r>/``)::

    feedback.jsonl      one row per training problem (the run's and earlier rounds' new ones):
                        id, the k outputs, the majority answer, easy or hard
    new_problems.jsonl  the round's new problems (Problem rows, split ``fdd``; ``meta`` records
                        the teacher, the source problem and the label rule), with their
                        label: ``fdd_label`` (an equation) or ``fdd_rationales`` (the
                        agreeing solutions, for a student trained on rationales)
    rejected.json       what the teacher wrote that was set aside, by reason
    teacher/            teacher 'llm' only: fdd_similar/ and fdd_harder/ (the problems it
                        wrote), label/ (its solutions of them), search/ (the equation search
                        for the agreed answers), summary.json (their figures)
    labels.json         equation students: problem id -> labels, the new problems' included
                        (the next round's)
    examples.parquet    the SFT examples of every problem so far
    train/, evaluate/   the retrained student and its report
    summary.json        the round's figures (also the manifest's counts)

Resumable like a refinement round: each file is written once, training resumes; the llm
teacher's generation keeps every committed row (a re-run asks only for the missing ones).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

from distill.fdd.core import (self_consistent_answers, similar_problems, split_easy_hard,
                              teacher_problems)
from distill.fileio import read_jsonl, write_atomic, write_jsonl, write_parquet_once
from distill.sft.stage import WRITES as SFT_WRITES

__all__ = ["fdd_round", "llm_new_problems", "new_problems_of"]

NEW_PROBLEMS = "new_problems.jsonl"
TEACHER_SUMMARY = "summary.json"


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
    ``labels``: their labels (equation students; empty for students trained on rationales);
    ``student``: the student giving the feedback (the last one trained); ``pipeline``: the
    run's :class:`~distill.config.PipelineConfig`.

    An equation student (``equation_prefix``) is retrained on ``labels`` and the new problems'
    equations. A student trained on a teacher's rationales (``pot``, ``kpdd``, ``cot``; teacher
    ``llm`` only) is retrained on the examples it was trained on -- the round before's
    ``examples.parquet``, else the run's ``sft/examples.parquet`` -- and the new problems'
    agreeing rationales."""
    from distill.data.decontam import normalize_question
    from distill.evaluate.stage import predictions
    from distill.refine.stage import relabel_and_retrain, retrain_and_evaluate, sample_on_ray
    from distill.train.stage import read_example_rows

    cfg = pipeline.fdd
    target = pipeline.train.target
    on_rationales = not target.startswith("equation_")
    if target not in ("equation_prefix", "pot", "kpdd", "cot") or (
            on_rationales and cfg.teacher != "llm"):
        raise ValueError(f"fdd: teacher {cfg.teacher!r} cannot label new problems for "
                         f"train.target {target!r} (perturb: equation_prefix; llm: "
                         "equation_prefix, pot, kpdd, cot)")
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
        easy, _ = split_easy_hard(predictions(problems, outputs, target, pipeline.sandbox))
        easy_set = set(easy)
        feedback = [{"id": p["id"], "outputs": outs, "easy": p["id"] in easy_set}
                    for p, outs in zip(problems, outputs)]
        write_jsonl(feedback_file, feedback)
    hard_ids = {r["id"] for r in feedback if not r["easy"]}

    # 2. new problems, labelled (written once): similar ones for the hard problems from the
    # offline teacher, or similar and harder ones from a language model
    new_file = out / NEW_PROBLEMS
    if new_file.is_file():
        new = new_problems_of(out)
        rejected: dict[str, int] = json.loads((out / "rejected.json").read_text())
    else:
        avoid = {normalize_question(p["question"]) for p in problems}
        avoid |= {normalize_question(p["question"]) for rows in eval_sets.values() for p in rows}
        if cfg.teacher == "llm":
            new, rejected = llm_new_problems(round_no, problems, hard_ids, avoid,
                                             pipeline=pipeline, out=out / "teacher", log=log)
        else:
            aug = similar_problems([p for p in problems if p["id"] in hard_ids], labels,
                                   cfg.variants, random.Random(pipeline.seed * 1009 + round_no),
                                   avoid=avoid)
            new = [dict(p, fdd_label=aug.labels[p["id"]]) for p in aug.problems]
            rejected = dict(aug.rejected)
        write_atomic(out / "rejected.json", json.dumps(rejected, indent=1, sort_keys=True))
        write_jsonl(new_file, new)

    # 3. retrain on everything, evaluate
    start_from = student if cfg.start == "last" else None
    if on_rationales:
        examples_file = out / "examples.parquet"
        if not examples_file.is_file():
            before = (run_dir / f"fdd_{round_no - 1}" if round_no > 1 else run_dir / "sft")
            write_parquet_once(examples_file, read_example_rows(before / "examples.parquet")
                               + rationale_examples(new, target, pipeline.sft.max_per_problem),
                               SFT_WRITES)
        trained, report = retrain_and_evaluate(
            examples_file, f"fdd_{round_no}", cfg.epochs, eval_sets, pipeline=pipeline,
            run_dir=run_dir, out=out, log=log, start_from=start_from)
    else:
        all_labels = {pid: list(v) for pid, v in labels.items()}
        all_labels.update({p["id"]: [p["fdd_label"]] for p in new})
        trained, report = relabel_and_retrain(
            f"fdd_{round_no}", problems + new, all_labels, cfg.epochs, eval_sets,
            pipeline=pipeline, run_dir=run_dir, out=out, log=log, start_from=start_from)
    summary = {
        "round": round_no, "problems": len(problems),
        "easy": len(feedback) - len(hard_ids), "hard": len(hard_ids),
        "generated": len(new), "rejected": rejected,
        **({"teacher": json.loads((out / "teacher" / TEACHER_SUMMARY).read_text())}
           if cfg.teacher == "llm" else {}),
        "accuracy": report["accuracy"], "correct": report["correct"], "n": report["n"],
        "per_dataset": report["per_dataset"],
        "checkpoint_dir": trained["checkpoint_dir"], "final_loss": trained["final_loss"],
        "seconds": round(time.perf_counter() - t0, 3),
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False))
    log(f"[fdd_{round_no}] {summary['easy']} easy, {summary['hard']} hard, {len(new)} new "
        f"problems; accuracy {report['accuracy']:.2%} ({report['correct']}/{report['n']})")
    return summary


def llm_new_problems(round_no: int, problems: Sequence[Mapping[str, Any]],
                     hard_ids: Collection[str], avoid: Collection[str], *, pipeline: Any,
                     out: Path, log: Callable[[str], None] = print
                     ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The new problems of an FDD round written by a language model (``pipeline.fdd.llm``),
    with their labels (below), and the count of what was set aside by reason.

    On Ray (initialised by the caller), into ``out``: the teacher writes ``fdd.variants``
    similar problems per hard problem and ``llm.harder`` harder ones per easy problem (the
    generation stage: verified as well-formed problems, committed as they come, a re-run asks
    only for what is missing); those that are new (normalized text not in ``avoid`` nor
    written twice) and have quantities are solved ``llm.label_samples`` times; a problem whose
    majority answer has ``llm.min_agreement`` is kept with that answer and its label:

    * an equation student's (``fdd_label``): the equation search over its quantities for that
      answer (the run's ``search`` section, as the training data was labelled); none found:
      set aside (``no_equation_found``);
    * a rationale student's (``fdd_rationales``): the solutions giving that answer (solved
      with the run's own ``generate`` strategy, so they have the fields its target needs),
      marked correct.

    The figures go to ``out/summary.json``."""
    from distill.generate.stage import generate_dataset, read_rationales
    from distill.grading import answers_match
    from distill.search.stage import search_dataset
    from distill.sft.stage import read_rationales as read_search_rows, search_equations

    fdd, teacher = pipeline.fdd, pipeline.fdd.llm
    run_on_ray = dict(resources=pipeline.ray.for_stage("generate"),
                      verify_resources=pipeline.ray.for_stage("verify"), sandbox=pipeline.sandbox,
                      progress=log)
    sources = {p["id"]: p for p in problems}
    written, figures = [], {}
    for strategy, chosen, n in (
            ("fdd_similar", [p for p in problems if p["id"] in hard_ids], fdd.variants),
            ("fdd_harder", [p for p in problems if p["id"] not in hard_ids], teacher.harder)):
        if not chosen or not n:
            continue
        log(f"[fdd_{round_no}] {teacher.generate.model} writes {n} {strategy} problem(s) for "
            f"each of {len(chosen)} problems")
        config = teacher.generate.model_copy(update={"strategy": strategy, "samples": n})
        summary = generate_dataset(chosen, config, out / strategy, **run_on_ray,
                                   problems_label=f"fdd_{round_no} {strategy}")
        figures[strategy] = {k: summary[k] for k in ("rows", "correct", "pass_rate")}
        written += read_rationales(out / strategy).to_pylist()
    candidates, rejected = teacher_problems(written, sources, round_no, avoid=avoid)

    # solved label_samples times: with label_strategy for an equation student, with the run's
    # own teacher strategy for a student trained on its rationales
    on_rationales = not pipeline.train.target.startswith("equation_")
    solver = (pipeline.generate if on_rationales else
              teacher.generate.model_copy(update={"strategy": teacher.label_strategy}))
    labelled: dict[str, Any] = {}
    solutions: list[dict[str, Any]] = []
    if candidates:
        log(f"[fdd_{round_no}] {len(candidates)} new problems, each solved "
            f"{teacher.label_samples} times ({solver.strategy})")
        config = solver.model_copy(update={
            "samples": teacher.label_samples,
            "sampling": solver.sampling.model_copy(
                update={"temperature": teacher.label_temperature})})
        generate_dataset(candidates, config, out / "label", **run_on_ray,
                         problems_label=f"fdd_{round_no} new problems")
        solutions = read_rationales(out / "label").to_pylist()
        labelled, why = self_consistent_answers(solutions, teacher.label_samples,
                                                teacher.min_agreement)
        rejected.update(why)
    agreed = [dict(p, answer=labelled[p["id"]].answer, answer_raw=labelled[p["id"]].answer)
              for p in candidates if p["id"] in labelled]

    def kept(p: Mapping[str, Any], **label: Any) -> dict[str, Any]:
        meta = dict(json.loads(p["meta"]),
                    label_rule=labelled[p["id"]].rule(teacher.min_agreement))
        return dict(p, meta=json.dumps(meta, ensure_ascii=False, sort_keys=True), **label)

    new = []
    if on_rationales:  # trained on the solutions that give the agreed answer
        by_problem: dict[str, list[dict[str, Any]]] = {}
        for r in solutions:
            by_problem.setdefault(r["id"], []).append(r)
        for p in agreed:
            rows = [dict(r, verdict="correct", error=None) for r in by_problem[p["id"]]
                    if r["predicted"] is not None and answers_match(r["predicted"], p["answer"])]
            new.append(kept(p, fdd_rationales=rows))
    elif agreed:  # an equation over the quantities that gives the agreed answer: the search's
        search_dir = out / "search"
        if not (search_dir / "summary.json").is_file():
            search_dataset(agreed, pipeline.search, search_dir,
                           resources=pipeline.ray.for_stage("search"))
        equations = search_equations(read_search_rows(search_dir / "rationales"))[0]
        for p in agreed:
            if p["id"] in equations:
                new.append(kept(p, fdd_label=equations[p["id"]]))
            else:
                rejected["no_equation_found"] += 1
    figures.update({"written": len(written), "new": len(candidates), "agreed": len(agreed),
                    "kept": len(new)})
    write_atomic(out / TEACHER_SUMMARY, json.dumps(figures, indent=1, sort_keys=True))
    return new, dict(rejected)


def rationale_examples(new: Sequence[Mapping[str, Any]], target: str,
                       max_per_problem: int | None) -> list[dict[str, Any]]:
    """SFT examples for ``target`` from the new problems' agreeing solutions
    (``fdd_rationales``), at most ``max_per_problem`` each."""
    from distill.sft.core import build_sft_examples

    rationales = [r for p in new for r in p["fdd_rationales"]]
    return build_sft_examples(new, target, rationales=rationales,
                              max_per_problem=max_per_problem).rows
