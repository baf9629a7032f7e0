"""The whole pipeline on a local Ray: data -> search -> SFT -> train -> evaluate, the manifest,
skipping what is complete, stopping early, and runs killed (SIGKILL) mid-way and restarted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from distill import pipeline
from distill.config import ConfigError, PipelineConfig, dump_config, load_config
from distill.data.stage import read_problems
from distill.grading import grade
from distill.pipeline import run_pipeline
from metrics_scraper import MetricsScraper

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.ray


# Epochs of the reference run: enough for the tiny student to learn the one- and two-step
# problems of small_quickstart (accuracy on its 30 held-out problems, seeds 0-4: see
# ACCURACY_FLOOR).
REFERENCE_EPOCHS = 12
# Measured over seeds 0-4 of small_quickstart(REFERENCE_EPOCHS) (data and train seed together):
# 12, 14, 16, 18 and 11 of 30 correct (0.37-0.60; 2026-12-03, 2 cores); the floor sits well
# below the lowest, so it catches a student that stopped learning, not a seed's bad luck.
ACCURACY_FLOOR = 0.25


def small_quickstart(epochs: int = REFERENCE_EPOCHS) -> PipelineConfig:
    """The quickstart config, shrunk to about a minute: 120 English training problems of one or
    two steps, 30 held out."""
    cfg = load_config(REPO / "configs" / "quickstart.yaml")
    data = cfg.data.model_copy(update={"synthetic": cfg.data.synthetic.model_copy(
        update={"n_train": 120, "n_valid": 20, "n_test": 30, "langs": ["en"], "max_steps": 2})})
    train = cfg.train.model_copy(update={"epochs": epochs, "num_workers": 1, "batch_size": 16,
                                         "log_every_steps": 5})
    return cfg.model_copy(update={"data": data, "train": train,
                                  "search": cfg.search.model_copy(update={"max_ops": 3})})


def _rows(folder: Path, keys: tuple[str, ...]) -> list[tuple]:
    return sorted(tuple(r[k] for k in keys) for r in pq.read_table(str(folder)).to_pylist())


PROBLEM_KEYS = ("id", "question", "masked_question", "answer", "equation")
RATIONALE_KEYS = ("id", "sample_idx", "equation", "program", "predicted", "verdict")
SFT_KEYS = ("problem_id", "stage", "source_text", "target_text")


def data_rows(run_dir: Path) -> dict[str, list[tuple]]:
    """Every row the run derived from the data, in a comparable form (no timings)."""
    return {
        "train": _rows(run_dir / "data" / "train", PROBLEM_KEYS),
        "eval": _rows(run_dir / "data" / "eval" / "synthetic_test", PROBLEM_KEYS),
        "search": _rows(run_dir / "search" / "rationales", RATIONALE_KEYS),
        "sft": _rows(run_dir / "sft" / "examples.parquet", SFT_KEYS),
    }


@pytest.fixture(scope="module")
def reference_run(ray_local, tmp_path_factory) -> tuple[Path, dict, list[str], MetricsScraper]:
    """The small quickstart run (search teacher), and the metrics Ray exported during it."""
    run_dir = tmp_path_factory.mktemp("pipeline") / "run"
    logs: list[str] = []
    with MetricsScraper() as metrics:
        manifest = run_pipeline(small_quickstart(), run_dir, log=logs.append)
    return run_dir, manifest, logs, metrics


#: the metrics the search-teacher run and the generating-teacher run export between them
SEARCH_RUN_METRICS = {"stage_rows", "stage_rows_per_s", "stage_seconds", "search_problems",
                      "search_budget_hits", "search_coverage", "train_loss",
                      "train_tokens_per_s"}
GENERATE_RUN_METRICS = {"stage_rows", "stage_rows_per_s", "stage_seconds", "teacher_requests",
                        "teacher_pass_rate", "sandbox_programs", "sandbox_programs_per_s",
                        "train_loss", "train_tokens_per_s"}


def test_the_two_end_to_end_runs_check_every_pipeline_metric() -> None:
    from distill.metrics import METRICS

    assert SEARCH_RUN_METRICS | GENERATE_RUN_METRICS == {
        name for name, m in METRICS.items() if not m.serving}


def test_the_run_exports_its_metrics_to_ray(reference_run) -> None:
    """While the run works, Ray's metrics export shows every stage's rows, the search's
    problems and coverage and the training's loss -- the numbers the manifest records."""
    _, manifest, _, metrics = reference_run
    # search_budget_hits: this run hits no budget, so Ray never exports the counter
    assert metrics.wait_for(SEARCH_RUN_METRICS - {"search_budget_hits"}) == set()
    stages = manifest["stages"]
    search = stages["search"]["counts"]
    # the last stage's figures are exported a moment after the run returns
    assert metrics.wait_until(lambda m: all(
        m.last("stage_seconds", stage=name) == stages[name]["seconds"]
        for name in ("search", "train", "evaluate")))
    assert metrics.delta("stage_rows", stage="search", direction="in") == 120
    assert metrics.delta("stage_rows", stage="search", direction="out") == search["solved"]
    assert metrics.delta("stage_rows", stage="sft", direction="out") == \
        stages["sft"]["counts"]["examples"]
    assert metrics.delta("stage_rows", stage="evaluate", direction="in") == 30
    assert metrics.delta("search_problems", found="true") == search["solved"]
    assert metrics.delta("search_problems", found="false") == 120 - search["solved"]
    assert search["budget_hits"] == 0 and metrics.delta("search_budget_hits") == 0
    assert metrics.last("search_coverage") == search["coverage"]
    assert metrics.last("train_loss", run="student") == pytest.approx(
        stages["train"]["counts"]["final_loss"])
    assert metrics.last("train_tokens_per_s", run="student") > 0


def test_full_run_writes_every_stage_and_a_report(reference_run) -> None:
    run_dir, manifest, *_ = reference_run
    assert list(manifest["stages"]) == ["data", "search", "sft", "train", "evaluate"]
    assert all(s["status"] == "complete" for s in manifest["stages"].values())
    on_disk = json.loads((run_dir / "manifest.json").read_text())
    assert on_disk["stages"]["evaluate"]["status"] == "complete"
    for stage in on_disk["stages"].values():  # what computed each stage's rows
        assert len(stage["code_version"]) == 16 and stage["git"]
    assert read_problems(run_dir / "data" / "train").num_rows == 120
    search = manifest["stages"]["search"]["counts"]
    assert search["problems"] == 120 and search["coverage"] > 0.9
    sft = manifest["stages"]["sft"]["counts"]
    assert sft["examples"] == search["solved"]  # one pseudo-label per solved problem
    train = manifest["stages"]["train"]["counts"]
    assert Path(train["checkpoint_dir"]).name == f"epoch_{REFERENCE_EPOCHS:04d}"
    assert train["final_loss"] > 0
    report = json.loads((run_dir / "evaluate" / "report.json").read_text())
    assert report["n"] == 30 and set(report["per_dataset"]) == {"synthetic:test"}
    assert report["accuracy"] >= ACCURACY_FLOOR, report["accuracy"]
    preds = [json.loads(p) for p in (run_dir / "evaluate" / "predictions.jsonl").read_text()
             .splitlines()]
    # the report's count is the rows' count: each prediction graded again by the one grader
    assert report["correct"] == sum(
        p["predicted"] is not None and grade(p["predicted"], p["gold"]).equal for p in preds)
    for name in ("accuracy_per_dataset", "accuracy_per_ops", "error_kinds"):
        assert (run_dir / "evaluate" / "plots" / f"{name}.png").stat().st_size > 0
    assert len(preds) == 30 and {p["dataset"] for p in preds} == {"synthetic:test"}
    assert "Accuracy" in (run_dir / "evaluate" / "report.md").read_text()


def test_rerun_skips_complete_stages_and_reruns_from_a_changed_one(reference_run, tmp_path,
                                                                  monkeypatch) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run[0], run_dir)
    before = json.loads((run_dir / "manifest.json").read_text())
    logs: list[str] = []
    cfg = small_quickstart()
    run_pipeline(cfg, run_dir, log=logs.append)
    assert sum("skipped" in line for line in logs) == 5
    # nothing ran, so nothing about what computed the stages is rewritten
    assert json.loads((run_dir / "manifest.json").read_text())["stages"] == before["stages"]
    # the evaluation code changed: only evaluate runs again, and records the new version
    real = pipeline.code_version
    monkeypatch.setattr(pipeline, "code_version", lambda entries: real(entries) + (
        "+edited" if "distill.evaluate.stage" in entries else ""))
    logs.clear()
    manifest = run_pipeline(cfg, run_dir, log=logs.append)
    assert [line.split()[0] for line in logs if "skipped" in line] == [
        "[data]", "[search]", "[sft]", "[train]"]
    assert manifest["stages"]["evaluate"]["code_version"].endswith("+edited")
    monkeypatch.undo()
    # evaluation settings changed: only evaluate runs again
    cfg.evaluate = cfg.evaluate.model_copy(update={"limit": 10})
    logs.clear()
    manifest = run_pipeline(cfg, run_dir, log=logs.append)
    assert [line for line in logs if "skipped" in line][-1].startswith("[train]")
    assert manifest["stages"]["evaluate"]["counts"]["n"] == 10


def test_a_refinement_round_from_the_reference_run(reference_run, tmp_path) -> None:
    """refine_1 and fdd_1 after the reference run's stages (they are skipped: the rounds are not
    part of their keys), then both stopped inside (manifest still running) and resumed."""
    from distill.equations import parse_prefix
    from distill.evaluate.infer import equation_answer
    from distill.evaluate.student import resolve_student
    from distill.data.decontam import normalize_question
    from distill.equations import parse, value_of
    from distill.fdd.config import FDDConfig
    from distill.quantities import parse_number
    from distill.refine.config import RefineConfig
    from distill.evaluate.config import InferenceConfig
    from distill.evaluate.infer import score_targets
    from distill.sft.core import equation_target
    from distill.sft.stage import read_rationales, search_equations
    from distill.train.stage import final_student

    run = tmp_path / "run"
    shutil.copytree(reference_run[0], run)
    # every label with a ranking margin under 100 is doubtful: the pool is not empty; then one
    # FDD round with the perturb teacher
    cfg = small_quickstart().model_copy(update={
        "refine": RefineConfig(rounds=1, candidates=4, doubtful_margin=100.0, epochs=1,
                               rescore=True),
        "fdd": FDDConfig(rounds=1, samples=2, variants=2, epochs=1)})
    logs: list[str] = []
    manifest = run_pipeline(cfg, run, log=logs.append)
    assert [line.split()[0] for line in logs if "skipped" in line] == [
        "[data]", "[search]", "[sft]", "[train]", "[evaluate]"]
    summary = manifest["stages"]["refine_1"]["counts"]
    out = run / "refine_1"
    rows = [json.loads(line) for line in (out / "candidates.jsonl").open()]
    problems = {r["id"]: r for r in pq.read_table(str(run / "data" / "train")).to_pylist()}
    assert summary["pool"] == len(rows) > 0
    assert summary["candidates_tried"] == 4 * len(rows)
    chosen = {r["id"]: r["chosen"] for r in rows if r["chosen"]}
    assert summary["accepted"] == len(chosen) > 0
    for r in rows:
        assert len(r["outputs"]) == 4
        for text in r["outputs"]:
            parse_prefix(text)  # the grammar: every candidate is well-formed
    for pid, label in chosen.items():  # an accepted label gives the problem's answer
        target = equation_target(label, "prefix", len(problems[pid]["quantities"]))
        answer, _ = equation_answer(target, problems[pid]["quantities"])
        assert grade(answer, problems[pid]["answer"]).equal, (pid, label)
    labels = json.loads((out / "labels.json").read_text())
    for pid, label in chosen.items():
        assert labels[pid] == [label]  # rule: replace
    # rescore: the middle model ranked the search's matches of the problems the sampling gave
    # no label, by its likelihood of each (the same numbers it gives them here), and the most
    # likely became the label
    rescored = [json.loads(line) for line in (out / "rescored.jsonl").open()]
    assert summary["rescored"] == len(rescored) > 0
    middle = final_student(run, refined=False)
    by_sampling = {r["id"] for r in rows if r["chosen"]}
    search_labels = search_equations(read_rationales(run / "search" / "rationales"))[0]
    for r in rescored:  # the label before the round first, then the other matches
        assert r["id"] not in by_sampling and len(r["candidates"]) >= 2
        assert r["candidates"][0] == search_labels[r["id"]]
    sources = [problems[r["id"]]["masked_question"] for r in rescored for _ in r["candidates"]]
    targets = [equation_target(c, "prefix") for r in rescored for c in r["candidates"]]
    here = iter(score_targets(str(middle), sources, targets,
                              InferenceConfig(max_source_length=cfg.train.max_source_length),
                              cfg.train.max_target_length))
    for r in rescored:
        mine = [next(here) for _ in r["candidates"]]
        assert r["nll"] == pytest.approx(mine, abs=1e-3)
        assert r["chosen"] == r["candidates"][mine.index(min(mine))]
        assert labels[r["id"]] == [r["chosen"]]
    examples = pq.read_table(str(out / "examples.parquet")).to_pylist()
    by_problem = {e["problem_id"]: e["target_text"] for e in examples}
    assert len(examples) == len(by_problem) == sum(1 for v in labels.values() if v)
    for pid, label in chosen.items():
        assert by_problem[pid] == equation_target(label, "prefix")
    report = json.loads((out / "evaluate" / "report.json").read_text())
    assert summary["accuracy"] == report["accuracy"] and report["n"] == 30
    # fdd_1: the feedback covers every training problem; the new problems are labelled with
    # their source's equation, which gives their answer exactly; none is a known problem
    fdd = manifest["stages"]["fdd_1"]["counts"]
    fdd_out = run / "fdd_1"
    feedback = [json.loads(line) for line in (fdd_out / "feedback.jsonl").open()]
    assert len(feedback) == fdd["problems"] == 120 and fdd["easy"] + fdd["hard"] == 120
    assert all(len(f["outputs"]) == 2 for f in feedback)
    new = [json.loads(line) for line in (fdd_out / "new_problems.jsonl").open()]
    assert len(new) == fdd["generated"] > 0
    hard = {f["id"] for f in feedback if not f["easy"]}
    known = {normalize_question(p["question"]) for p in problems.values()}
    known |= {normalize_question(p["question"])
              for p in pq.read_table(str(run / "data" / "eval" / "synthetic_test")).to_pylist()}
    fdd_labels = json.loads((fdd_out / "labels.json").read_text())
    for p in new:
        assert json.loads(p["meta"])["source_id"] in hard
        assert normalize_question(p["question"]) not in known
        values = {f"N{i}": parse_number(q) for i, q in enumerate(p["quantities"])}
        assert value_of(parse(fdd_labels[p["id"]][0]), values) == parse_number(p["answer"])
    fdd_examples = pq.read_table(str(fdd_out / "examples.parquet")).num_rows
    assert fdd_examples == len(examples) + len(new)
    # the run's final student is the last round's (serving and `mathdistill evaluate` use it);
    # the first evaluation stays the first student's
    assert final_student(run) == run / fdd["checkpoint_dir"]
    assert "fdd_1" in fdd["checkpoint_dir"] and "refine_1" in summary["checkpoint_dir"]
    assert resolve_student(run).checkpoint == str(final_student(run))
    first = str(final_student(run, refined=False))
    assert "refine_1" not in first and "fdd_1" not in first
    # the run's report has the round, and the plot of accuracy by round
    text = (run / "report.md").read_text()
    assert "## Refinement rounds" in text and "### Round 1" in text and "## FDD rounds" in text
    assert f"| 1 | {summary['pool']} | {summary['candidates_tried']} | {summary['accepted']} |" \
        in text
    assert (run / "report_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a run stopped inside both rounds (the manifest still says running; their summaries not
    # yet written): started again, each round keeps what it wrote byte for byte (refine_1 its
    # candidates, labels and examples; fdd_1 its feedback, new problems, labels and
    # examples), resumes training from its checkpoints and completes with the same figures
    written = {"refine_1": ("candidates.jsonl", "rescored.jsonl", "labels.json",
                            "examples.parquet"),
               "fdd_1": ("feedback.jsonl", "new_problems.jsonl", "labels.json",
                         "examples.parquet")}
    before = {(r, f): (run / r / f).read_bytes() for r, files in written.items() for f in files}
    data = json.loads((run / "manifest.json").read_text())
    for r in written:
        data["stages"][r]["status"] = "running"
        (run / r / "summary.json").unlink()
    (run / "manifest.json").write_text(json.dumps(data))
    again = run_pipeline(cfg, run, log=lambda s: None)
    assert {k: (run / k[0] / k[1]).read_bytes() for k in before} == before
    for r in written:
        assert again["stages"][r]["status"] == "complete"
    assert {k: again["stages"]["refine_1"]["counts"][k] for k in ("accepted", "rescored")} == {
        k: summary[k] for k in ("accepted", "rescored")}
    assert {k: again["stages"]["fdd_1"]["counts"][k] for k in ("easy", "hard", "generated")} == {
        k: fdd[k] for k in ("easy", "hard", "generated")}


def test_until_stops_after_a_stage_and_gold_teacher_builds_from_gold(ray_local, tmp_path) -> None:
    cfg = small_quickstart().model_copy(update={"teacher": "gold"})
    manifest = run_pipeline(cfg, tmp_path / "gold", log=lambda s: None, until="sft")
    assert list(manifest["stages"]) == ["data", "sft"]
    counts = manifest["stages"]["sft"]["counts"]
    assert counts["examples"] + sum(counts["skipped"].values()) == 120
    assert counts["examples"] > 100
    with pytest.raises(ConfigError, match="no stage 'search'"):
        run_pipeline(cfg, tmp_path / "gold", until="search")


def _ray_env(ray_local) -> dict[str, str]:
    """Subprocess drivers join the tests' Ray cluster instead of starting one each."""
    env = dict(os.environ, RAY_ADDRESS=ray_local.get_runtime_context().gcs_address,
               PYTHONPATH=str(REPO))
    return env


def _manifest(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _kill_when(cmd: list[str], env: dict, ready, timeout_s: float = 240.0) -> None:
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if ready():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
                return
            if proc.poll() is not None:
                pytest.fail(f"the run ended (status {proc.returncode}) before the kill point")
            time.sleep(0.05)
        pytest.fail("the kill point was never reached")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def _running(run_dir: Path, stage: str) -> bool:
    return _manifest(run_dir).get("stages", {}).get(stage, {}).get("status") == "running"


KILL_POINTS = {
    "search": lambda d: _running(d, "search"),
    # after the first epoch's checkpoint: the restart must resume from it
    "train": lambda d: _running(d, "train") and any((d / "train" / "student").glob("epoch_*")),
    "evaluate": lambda d: _running(d, "evaluate"),
}


def _copy_run(src: Path, dst: Path, drop: tuple[str, ...] = ()) -> None:
    """A copy of a finished run as it stood before the stages in ``drop`` ever started."""
    shutil.copytree(src, dst)
    manifest = _manifest(dst)
    for name in drop:
        del manifest["stages"][name]
        shutil.rmtree(dst / name)
    (dst / "manifest.json").write_text(json.dumps(manifest))


# Where each kill test starts (the stages before the killed one are taken from the reference
# run, as a re-run would skip them) and where it stops (what the killed stage feeds is compared).
KILL_PLANS = {
    "search": dict(copy=False, until="sft"),
    # 2 epochs instead of the reference's 12: train's key changes, so the run retrains
    "train": dict(copy=True, drop=(), until="train", epochs=2),
    "evaluate": dict(copy=True, drop=("evaluate",), until=None),
}


@pytest.mark.parametrize("stage", list(KILL_POINTS))
def test_a_run_killed_mid_stage_finishes_with_the_same_rows(ray_local, reference_run, tmp_path,
                                                            stage) -> None:
    ref_dir, *_ = reference_run
    plan = KILL_PLANS[stage]
    cfg = small_quickstart(epochs=plan.get("epochs", REFERENCE_EPOCHS))
    config_file = tmp_path / "config.yaml"
    dump_config(cfg, config_file)
    raw = yaml.safe_load(config_file.read_text())
    raw["ray"] = {"num_cpus": None, "address": None}
    config_file.write_text(yaml.safe_dump(raw))
    run_dir = tmp_path / "run"
    if plan["copy"]:
        _copy_run(ref_dir, run_dir, drop=plan["drop"])
    cmd = [sys.executable, "-m", "jobs.pipeline", "--config", str(config_file),
           "--run-dir", str(run_dir)] + (["--until", plan["until"]] if plan["until"] else [])
    env = _ray_env(ray_local)
    _kill_when(cmd, env, lambda: KILL_POINTS[stage](run_dir))
    assert _manifest(run_dir)["stages"][stage]["status"] == "running"
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = _manifest(run_dir)
    assert all(s["status"] == "complete" for s in manifest["stages"].values())
    assert stage in manifest["stages"]
    assert data_rows(run_dir) == data_rows(ref_dir)
    if stage == "train":
        assert "[train] resuming" in done.stdout
        assert Path(manifest["stages"]["train"]["counts"]["checkpoint_dir"]).name == "epoch_0002"
    if stage == "evaluate":  # same student, greedy decoding: the same predictions
        assert (run_dir / "evaluate" / "predictions.jsonl").read_text() == \
            (ref_dir / "evaluate" / "predictions.jsonl").read_text()
        report, ref = (json.loads((d / "evaluate" / "report.json").read_text())
                       for d in (run_dir, ref_dir))
        assert (report["n"], report["accuracy"]) == (30, ref["accuracy"])
        assert report["student"] == str(run_dir / "train" / "student" / "epoch_0012")


def test_a_run_on_s3_survives_lost_nodes_and_a_killed_driver_with_the_same_rows(
        reference_run, s3, tmp_path) -> None:
    """The cluster path end to end on this machine. A cluster of three nodes (a head that runs
    no work, two one-CPU worker nodes: tests/multinode_cluster.py) runs the pipeline as a job's
    driver would, its run directory on an object store (moto's S3 server on loopback: every
    stage reads and writes there, whichever node runs it).

    1. The worker node running a search actor loses its raylet (SIGKILL, the node gone) as soon
       as the actor starts; a new node replaces it, as an autoscaler would.
    2. The node running the training worker is lost once Ray Train has registered the first
       epoch's checkpoint; a new node replaces it.
    3. The driver itself is killed (SIGKILL) once the second epoch's checkpoint is registered,
       and started again, as a job is resubmitted.

    Ray Data restarts the search actor and redoes its blocks; Ray Train restarts the worker
    group from the registered checkpoint (``train.max_failures``: epoch 1 is not trained
    again); the second driver skips the finished stages and resumes training from the
    checkpoint on S3. The run ends with the rows of the uninterrupted local reference run."""
    from distill.runreport import run_report
    from distill.storage import run_location
    from multinode_cluster import MultiNodeCluster

    ref_dir, *_ = reference_run
    config_file = tmp_path / "config.yaml"
    dump_config(small_quickstart(epochs=3), config_file)
    raw = yaml.safe_load(config_file.read_text())
    raw["ray"] = {"num_cpus": None, "address": None}
    raw["train"]["checkpointing"]["num_to_keep"] = None  # epoch 1's checkpoint stays to be read
    config_file.write_text(yaml.safe_dump(raw))
    run_dir = run_location(s3.uri("runs", "cluster"))
    student = run_dir / "train" / "student"
    cmd = [sys.executable, "-m", "jobs.pipeline", "--config", str(config_file),
           "--run-dir", str(run_dir)]

    def registered() -> list[str]:  # the checkpoints Ray Train has recorded as complete
        try:
            snapshot = json.loads((student / "checkpoint_manager_snapshot.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return []
        return [c["checkpoint_dir_name"] for c in snapshot["checkpoint_results"]]

    def wait_for(what: str, proc: subprocess.Popen, ready) -> Any:
        deadline = time.monotonic() + 300
        while not (found := ready()):
            assert proc.poll() is None, f"the driver ended before {what}"
            assert time.monotonic() < deadline, f"{what}: never"
            time.sleep(0.05)
        return found

    status_when_lost: dict[str, str] = {}
    # the cluster's nodes start with the storage's environment (the s3 fixture set it here)
    with MultiNodeCluster(workers=2) as cluster:
        env = dict(os.environ, RAY_ADDRESS=cluster.address, PYTHONPATH=str(REPO))
        with open(tmp_path / "driver1.log", "w") as out:
            first = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
            try:
                for stage, worker, ready in (
                        ("search", "SearchUDF", lambda: _running(run_dir, "search")),
                        ("train", "RayTrainWorker", lambda: registered() == ["epoch_0001"])):
                    raylet = wait_for(f"a {worker} on a worker node", first,
                                      lambda: ready() and cluster.raylet_running(worker))
                    cluster.kill(raylet)
                    status_when_lost[stage] = _manifest(run_dir)["stages"][stage]["status"]
                    if stage == "train":
                        assert registered() == ["epoch_0001"]  # lost before epoch 2 ended
                        first_epoch = (student / "epoch_0001" / "model.safetensors").read_bytes()
                    cluster.add()
                wait_for("epoch 2", first, lambda: "epoch_0002" in registered())
            finally:
                os.killpg(first.pid, signal.SIGKILL)
                first.wait(30)
        assert status_when_lost == {"search": "running", "train": "running"}
        assert _manifest(run_dir)["stages"]["train"]["status"] == "running"
        assert registered() == ["epoch_0001", "epoch_0002"]  # killed before epoch 3's
        done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True,
                              timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[search] complete for this config" in done.stdout and \
        "[train] resuming" in done.stdout
    manifest = _manifest(run_dir)
    assert [(k, s["status"]) for k, s in manifest["stages"].items()] == [
        (k, "complete") for k in ("data", "search", "sft", "train", "evaluate")]
    assert data_rows(run_dir) == data_rows(ref_dir)
    result = json.loads((run_dir / "train" / "result.json").read_text())
    assert result["checkpoint_dir"] == "train/student/epoch_0003"
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3]
    assert registered() == ["epoch_0001", "epoch_0002", "epoch_0003"]
    # resumed from the registered checkpoint: epoch 1 was not trained (and written) again
    assert (student / "epoch_0001" / "model.safetensors").read_bytes() == first_epoch
    report = json.loads((run_dir / "evaluate" / "report.json").read_text())
    assert (report["n"], report["student"]) == (30, str(student / "epoch_0003"))
    predictions = (run_dir / "evaluate" / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 30
    text, _ = run_report(run_dir)
    assert f"({report['correct']}/30)" in text and (run_dir / "report.md").read_text() == text


def test_generating_teacher_pot_student_end_to_end(ray_local, tmp_path) -> None:
    """teacher: generate through the openai engine (a scripted OpenAI-compatible server on
    loopback that answers each problem with a program), pot target, evaluation in the sandbox;
    then an FDD round whose language-model teacher (the same server) writes a similar problem
    for each one the student fails and solves it twice: the agreeing programs join the
    examples the student was trained on, and the student is trained again."""
    import re

    from distill.data.synthetic import generate as synthetic
    from distill.fdd.config import FDDConfig
    from distill.generate.config import GenerateConfig
    from distill.generate.testing import TeacherServer
    from distill.train.stage import final_student

    n = 60  # training problems (the small quickstart's 120 halved: the test's time)
    cfg = small_quickstart(epochs=1)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={
        "synthetic": cfg.data.synthetic.model_copy(update={"n_train": n})})})
    answers = {p["question"]: p["answer"] for p in synthetic(cfg.data.synthetic, "train")}

    def responder(endpoint: str, body: dict) -> str:
        text = body.get("prompt") or "\n".join(m["content"] for m in body["messages"])
        if "creative math teacher" in text:  # fdd_similar: a new problem from the seed
            a, b = 2 + body["seed"] % 97, 2 + body["seed"] // 97 % 97
            return f"New problem: Kim has {a} marbles and finds {b} more. How many marbles now?"
        last = text.rsplit("Problem:", 1)[1]
        if "Kim has" in last:  # solving a new problem
            a, b = re.findall(r"\d+", last)[:2]
            return f"```python\nans = {a} + {b}\n```"
        answer = next(a for q, a in answers.items() if q in text)
        return f"```python\nans = {answer}\n```"

    with TeacherServer(responder) as server:
        teacher = GenerateConfig(strategy="pot", engine="openai", model="scripted",
                                 openai={"base_url": server.url})
        cfg = cfg.model_copy(update={
            "teacher": "generate", "generate": teacher,
            "train": cfg.train.model_copy(update={"target": "pot", "max_target_length": 32}),
            "fdd": FDDConfig(rounds=1, samples=1, variants=1, epochs=1, teacher="llm", llm={
                "generate": teacher, "harder": 0, "label_samples": 2, "min_agreement": 1.0}),
        })
        cfg = PipelineConfig.model_validate(cfg.model_dump())
        with MetricsScraper() as metrics:
            manifest = run_pipeline(cfg, tmp_path / "run", log=lambda s: None)
    assert list(manifest["stages"]) == ["data", "generate", "sft", "train", "evaluate", "fdd_1"]
    gen = manifest["stages"]["generate"]["counts"]
    assert gen["rows"] == gen["correct"] == n
    assert manifest["stages"]["sft"]["counts"]["examples"] == n
    report = json.loads((tmp_path / "run" / "evaluate" / "report.json").read_text())
    assert report["n"] == 30 and report["target"] == "pot"
    fdd = manifest["stages"]["fdd_1"]["counts"]
    out = tmp_path / "run" / "fdd_1"
    feedback = [json.loads(line) for line in (out / "feedback.jsonl").open()]
    assert len(feedback) == n and fdd["hard"] == sum(not f["easy"] for f in feedback) > 0
    new = [json.loads(line) for line in (out / "new_problems.jsonl").open()]
    assert fdd["generated"] == len(new) == fdd["teacher"]["kept"] > 0
    examples = pq.read_table(str(out / "examples.parquet")).to_pylist()
    assert len(examples) == n + len(new)
    by_problem = {e["problem_id"]: e for e in examples}
    for p in new:  # trained on a solution that gives the answer both samples agreed on
        a, b = (int(q) for q in p["quantities"])
        assert p["answer"] == str(a + b) and len(p["fdd_rationales"]) == 2
        assert by_problem[p["id"]]["target_text"] == p["fdd_rationales"][0]["program"]
        assert by_problem[p["id"]]["source_text"] == p["question"]
    assert final_student(tmp_path / "run") == tmp_path / "run" / fdd["checkpoint_dir"]
    assert json.loads((out / "evaluate" / "report.json").read_text())["target"] == "pot"
    # Ray's metrics export showed the teacher's generations and every program the sandbox ran:
    # the teacher's n and its solutions of the new problems (verification), the student's
    # answers to the 30 test problems twice (evaluations) and to the n training problems
    # (the round's feedback)
    assert metrics.wait_for(GENERATE_RUN_METRICS) == set()
    teacher = [json.loads((tmp_path / "run" / "generate" / "summary.json").read_text())] + [
        json.loads(f.read_text()) for f in sorted((out / "teacher").glob("*/summary.json"))]
    assert metrics.delta("teacher_requests", engine="openai", status="ok") == sum(
        t["rows"] - t["generation_failed"] for t in teacher)
    labels = json.loads((out / "teacher" / "label" / "summary.json").read_text())
    programs = n + labels["rows"] + 30 + n + 30
    assert metrics.wait_until(lambda m: m.delta("sandbox_programs") >= programs)
    assert metrics.delta("sandbox_programs") == programs
    assert metrics.last("teacher_pass_rate", strategy="pot") is not None
    assert metrics.delta("stage_rows", stage="generate", direction="out") == n


def test_teacher_and_target_must_fit() -> None:
    with pytest.raises(ValueError, match="needs a `generate` section"):
        PipelineConfig(name="x", teacher="generate", train={"target": "pot"})
    with pytest.raises(ValueError, match="needs teacher 'generate'"):
        PipelineConfig(name="x", teacher="search", train={"target": "cot"})
