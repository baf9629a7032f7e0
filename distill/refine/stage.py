"""One FLTT refinement round on Ray: decode the failure pool with the middle model, accept,
retrain, evaluate. A thin wrapper over :mod:`distill.refine.core`; decoding is the evaluation
stage's actor pool (:func:`distill.evaluate.stage.generate_on_ray`, equation students under
their grammar), training is :func:`distill.train.stage.fit`, evaluation
:func:`distill.evaluate.stage.evaluate_student`.

Layout of a round's folder (``<run>/refine_<r>/``)::

    candidates.jsonl    one row per pool problem: id, why it is in the pool, the k outputs,
                        votes of the accepted labels, the label chosen (or null), the old labels
    rescored.jsonl      with ``rescore``: one row per problem the middle model ranked (several
                        search matches, no label accepted by sampling): id, the candidates,
                        their nll, the label chosen (or null)
    labels.json         problem id -> labels after the round (the next round starts from it)
    examples.parquet    the SFT examples the student is retrained on
    train/              Ray Train checkpoints; result.json names the final one
    evaluate/           the evaluation stage's report of the retrained student
    summary.json        the round's figures (also the manifest's counts)

Resumable: each file is written once, atomically; a round killed and started again reuses the
candidates and examples it wrote, resumes training from its last checkpoint and evaluates again.

Contract: :data:`NEEDS` (the Problem columns of the training problems).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from distill.fileio import read_jsonl, write_atomic, write_jsonl, write_parquet_once
from distill.records import require_columns
from distill.storage import run_location
from distill.refine.core import (
    accepted_labels,
    choose_label,
    failure_pool,
    merge_labels,
    most_likely,
    rescore_candidates,
    same_function,
)

__all__ = ["NEEDS", "refine_round", "relabel_and_retrain", "rescore_on_ray",
           "retrain_and_evaluate", "retrain_config", "sample_on_ray"]

NEEDS: tuple[str, ...] = ("id", "masked_question", "quantities", "answer", "lang")


def _gold_labels(problems: Sequence[Mapping[str, Any]], constants: Sequence[str]
                 ) -> dict[str, str]:
    """Problem id -> its gold equation over its placeholders, where the data has one."""
    from distill.sft.core import masked_gold_equations

    with_gold = [p for p in problems if p.get("equation")]
    return masked_gold_equations(with_gold, constants)[0] if with_gold else {}


def sample_on_ray(student: str | Path, rows: Sequence[Mapping[str, Any]], k: int,
                  temperature: float, top_p: float, seed: int, *, pipeline: Any
                  ) -> list[list[str]]:
    """``k`` sampled outputs per row from ``student`` (the evaluation's actor pool and decoding
    settings, equation students under their grammar), in row order."""
    from distill.evaluate.config import EvaluateConfig
    from distill.evaluate.stage import generate_on_ray

    if not rows:
        return []
    inference = pipeline.evaluate.inference.model_copy(update={
        "num_samples": k, "num_beams": 1, "temperature": temperature, "top_p": top_p,
        "seed": seed,
        "constrain_equations": True})
    return generate_on_ray(str(student), list(rows), pipeline.train.target,
                           EvaluateConfig(inference=inference),
                           pipeline.ray.for_stage("evaluate"))


def rescore_on_ray(student: str | Path, problems: Sequence[Mapping[str, Any]],
                   candidates: Mapping[str, Sequence[str]], *, pipeline: Any
                   ) -> dict[str, list[float]]:
    """Problem id -> the negative log-likelihood ``student`` gives each of its ``candidates``
    (labels), each encoded as the training example it would become (``inf``: no example, or
    one the student cannot write). Scored in the evaluation's actor pool, with the training's
    source and target lengths."""
    from distill.evaluate.config import EvaluateConfig
    from distill.evaluate.stage import score_on_ray
    from distill.sft.core import build_sft_examples

    train = pipeline.train
    wanted = [p for p in problems if p["id"] in candidates]
    pairs: list[tuple[str, str]] = []
    where: dict[tuple[str, int], int] = {}
    for i in range(max((len(c) for c in candidates.values()), default=0)):
        layer = {pid: c[i] for pid, c in candidates.items() if len(c) > i}
        for row in build_sft_examples(wanted, train.target, equations=layer).rows:
            where[(row["problem_id"], i)] = len(pairs)
            pairs.append((row["source_text"], row["target_text"]))
    inference = pipeline.evaluate.inference.model_copy(
        update={"max_source_length": train.max_source_length})
    scores = score_on_ray(str(student), pairs, EvaluateConfig(inference=inference),
                          train.max_target_length, pipeline.ray.for_stage("evaluate"))
    return {pid: [scores[where[(pid, i)]] if (pid, i) in where else math.inf
                  for i in range(len(c))] for pid, c in candidates.items()}


def retrain_config(train: Any, round_name: str, epochs: int | None,
                   start_from: str | Path | None) -> Any:
    """The :class:`~distill.train.config.TrainConfig` of a round's retraining: the run's, with
    its own checkpoint name (``<name>_<round_name>``), ``epochs`` when given, and -- when
    ``start_from`` names a student folder -- that student (weights and tokenizer) as the
    initial one instead of a fresh one."""
    from distill.train.config import StudentConfig
    from distill.train.students import is_encoder_decoder

    ckpt = train.checkpointing
    update: dict[str, Any] = {"checkpointing": ckpt.model_copy(
        update={"name": f"{ckpt.name}_{round_name}"})}
    if epochs is not None:
        update["epochs"] = epochs
    if start_from is not None:
        kind = "hf_seq2seq" if is_encoder_decoder(start_from) else "hf_causal"
        # absolute: the training workers do not run in the driver's directory
        update["student"] = StudentConfig(kind=kind, name_or_path=str(
            run_location(start_from).absolute()))
    return train.model_copy(update=update)


def retrain_and_evaluate(examples_file: Path, round_name: str, epochs: int | None,
                         eval_sets: Mapping[str, Sequence[Mapping[str, Any]]], *, pipeline: Any,
                         run_dir: Path, out: Path, log: Callable[[str], None],
                         start_from: str | Path | None = None
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the run's student again on ``examples_file`` into ``out/train`` (its own Ray Train
    run, ``<name>_<round_name>``: never the first student's; resumes from its checkpoints) --
    from scratch, or from the student folder ``start_from`` (its weights and tokenizer) --
    record ``out/train/result.json`` and evaluate into ``out/evaluate``.
    Returns (the training summary, the evaluation report)."""
    from distill.evaluate.stage import evaluate_student
    from distill.train.stage import fit, record_result

    train_cfg = retrain_config(pipeline.train, round_name, epochs, start_from)
    result = fit(train_cfg, examples_file, storage_path=out / "train",
                 resources=pipeline.ray.for_stage("train"), log=log)
    trained = record_result(result, train_cfg.epochs, run_dir, out / "train")
    report = evaluate_student(result.checkpoint_dir, eval_sets, pipeline.train.target,
                              pipeline.evaluate, out / "evaluate",
                              resources=pipeline.ray.for_stage("evaluate"),
                              sandbox=pipeline.sandbox)
    return trained, report


def relabel_and_retrain(round_name: str, problems: Sequence[Mapping[str, Any]],
                        labels: Mapping[str, Sequence[str]], epochs: int | None,
                        eval_sets: Mapping[str, Sequence[Mapping[str, Any]]], *, pipeline: Any,
                        run_dir: Path, out: Path, log: Callable[[str], None],
                        start_from: str | Path | None = None
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A round's ``labels.json`` and ``examples.parquet`` (``problems`` with ``labels``; each
    written once), then :func:`retrain_and_evaluate`."""
    from distill.sft.core import examples_for_labels
    from distill.sft.stage import WRITES as SFT_WRITES

    if not (out / "labels.json").is_file():
        write_atomic(out / "labels.json", json.dumps(labels, indent=1, ensure_ascii=False,
                                                     sort_keys=True))
    examples_file = out / "examples.parquet"
    if not examples_file.is_file():
        examples = examples_for_labels(problems, pipeline.train.target, labels)
        if not examples:
            raise ValueError(f"{round_name}: no training examples")
        write_parquet_once(examples_file, examples, SFT_WRITES)
    return retrain_and_evaluate(examples_file, round_name, epochs, eval_sets, pipeline=pipeline,
                                run_dir=run_dir, out=out, log=log, start_from=start_from)


def refine_round(
    round_no: int,
    problems: Sequence[Mapping[str, Any]],
    eval_sets: Mapping[str, Sequence[Mapping[str, Any]]],
    labels: Mapping[str, Sequence[str]],
    rationales: Sequence[Mapping[str, Any]],
    middle_model: str | Path,
    *,
    pipeline: Any,
    run_dir: Path,
    out: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Round ``round_no`` of refinement under ``out``; returns its summary.

    ``labels``: the labels the round starts from (search's best match per problem, or the
    previous round's); ``rationales``: the search's rows (their ranking makes a label
    doubtful); ``middle_model``: the student that decodes the candidates; ``pipeline``: the
    run's :class:`~distill.config.PipelineConfig` (its ``refine``, ``train``, ``evaluate``,
    ``search`` constants, ``sandbox`` and Ray resources)."""
    cfg = pipeline.refine
    target = pipeline.train.target
    if target != "equation_prefix":
        raise ValueError(f"refine: the middle model must be an equation_prefix student "
                         f"(train.target is {target!r})")
    problems = list(problems)
    if problems:
        require_columns(problems[0].keys(), NEEDS, "refine (training problems)")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    by_id = {p["id"]: p for p in problems}

    # 1. the failure pool and its candidates (written once)
    cand_file = out / "candidates.jsonl"
    if cand_file.is_file():
        rows = read_jsonl(cand_file)
        log(f"[refine_{round_no}] candidates of {len(rows)} problems already decoded")
    else:
        pool = failure_pool(problems, labels, rationales, cfg)
        log(f"[refine_{round_no}] failure pool: {len(pool)} of {len(problems)} problems; "
            f"{cfg.candidates} candidates each")
        pool_rows = [by_id[pid] for pid in pool]
        outputs = sample_on_ray(middle_model, pool_rows, cfg.candidates, cfg.temperature,
                                cfg.top_p, pipeline.seed + round_no, pipeline=pipeline)
        rows = []
        for p, outs in zip(pool_rows, outputs):
            votes = accepted_labels(outs, p, pipeline.search.constant_texts(p.get("lang")))
            rows.append({"id": p["id"], "pool": pool[p["id"]], "outputs": outs,
                         "votes": dict(votes), "chosen": choose_label(votes, cfg.min_votes),
                         "old": list(labels.get(p["id"], []))})
        write_jsonl(cand_file, rows)

    sampled = {r["id"]: r["chosen"] for r in rows if r["chosen"]}
    chosen = dict(sampled)

    # 1b. the middle model ranks the search's matches of the other problems (written once)
    rescored: list[dict[str, Any]] = []
    if cfg.rescore:
        rescore_file = out / "rescored.jsonl"
        if rescore_file.is_file():
            rescored = read_jsonl(rescore_file)
        else:
            matches: dict[str, list[Mapping[str, Any]]] = {}
            for r in rationales:
                matches.setdefault(r["id"], []).append(r)
            todo = {p["id"]: c for p in problems if p["id"] not in chosen
                    and (c := rescore_candidates(labels.get(p["id"], []),
                                                 matches.get(p["id"], [])))}
            log(f"[refine_{round_no}] the middle model ranks the matches of {len(todo)} "
                f"problems ({sum(map(len, todo.values()))} labels)")
            scores = rescore_on_ray(middle_model, problems, todo, pipeline=pipeline)
            rescored = [{"id": pid, "candidates": c,  # nll null: the model cannot write it
                         "nll": [None if math.isinf(x) else round(x, 4) for x in scores[pid]],
                         "chosen": most_likely(c, scores[pid])} for pid, c in todo.items()]
            write_jsonl(rescore_file, rescored)
        chosen.update({r["id"]: r["chosen"] for r in rescored if r["chosen"]})

    # 2. the labels after the round
    new_labels, changed = merge_labels(labels, chosen, cfg.rule)

    # 3. retrain on the new labels (resumes from its checkpoints), then evaluate
    trained, report = relabel_and_retrain(
        f"refine_{round_no}", problems, new_labels, cfg.epochs, eval_sets, pipeline=pipeline,
        run_dir=run_dir, out=out, log=log,
        start_from=middle_model if cfg.start == "last" else None)

    # 4. the round's figures
    gold = _gold_labels([by_id[pid] for pid in {*labels, *new_labels} if pid in by_id],
                        pipeline.data.constants)
    compared = [pid for pid in sampled if pid in gold]
    reasons = Counter(why for r in rows for why in r["pool"])
    equal: dict[tuple[str, str], bool] = {}  # most labels are the same before and after

    def gold_equivalent(pid: str, label: str) -> bool:
        if (pid, label) not in equal:
            equal[(pid, label)] = same_function(label, gold[pid], len(by_id[pid]["quantities"]))
        return equal[(pid, label)]

    def labels_gold_equivalent(mapping: Mapping[str, Sequence[str]]) -> int:
        return sum(gold_equivalent(pid, ls[0]) for pid, ls in mapping.items()
                   if ls and pid in gold)

    summary = {
        "round": round_no,
        "pool": len(rows), "pool_reasons": dict(reasons),
        "candidates_tried": sum(len(r["outputs"]) for r in rows),
        "accepted": len(sampled),
        "rescored": len(rescored),
        "rescored_chosen_other": sum(
            1 for r in rescored if r["chosen"] and r["chosen"] != r["candidates"][0]),
        "labels_changed": changed,
        "labelled_problems": sum(1 for v in new_labels.values() if v),
        "new_labels_with_gold": len(compared),
        "new_labels_gold_equivalent": sum(gold_equivalent(pid, sampled[pid]) for pid in compared),
        # the first label of every labelled problem with a gold equation, before and after
        "labels_with_gold": sum(1 for pid, ls in new_labels.items() if ls and pid in gold),
        "labels_gold_equivalent_before": labels_gold_equivalent(labels),
        "labels_gold_equivalent_after": labels_gold_equivalent(new_labels),
        "accuracy": report["accuracy"], "correct": report["correct"], "n": report["n"],
        "per_dataset": report["per_dataset"],
        "checkpoint_dir": trained["checkpoint_dir"], "final_loss": trained["final_loss"],
        "seconds": round(time.perf_counter() - t0, 3),
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False))
    log(f"[refine_{round_no}] pool {summary['pool']}, accepted {summary['accepted']}, labels "
        f"changed {changed}; accuracy {report['accuracy']:.2%} "
        f"({report['correct']}/{report['n']})")
    return summary
