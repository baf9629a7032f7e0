"""Student training on a local Ray (2 CPUs): a TorchTrainer with 2 workers, DDP and DeepSpeed
ZeRO-2, a checkpoint per epoch that transformers loads, and a killed driver that resumes.

Run as a script, this file is the driver the kill test starts and kills:
``python tests/test_train_ray.py GCS_ADDRESS STORAGE``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _rows(n: int) -> list[dict]:
    from distill.data.synthetic import SyntheticConfig, generate
    from distill.sft.core import build_sft_examples, masked_gold_equations

    problems = generate(SyntheticConfig(seed=3, langs=["en"], max_steps=2), "train", n=n)
    eqs, _ = masked_gold_equations(problems)
    return build_sft_examples(problems, "equation_prefix", equations=eqs).rows


def _config(name: str, **kw):
    from distill.train.config import TrainConfig

    base = {"student": {"kind": "scratch", "vocab_size": 600}, "epochs": 2, "batch_size": 16,
            "num_workers": 2, "log_every_steps": 4, "max_source_length": 96,
            "max_target_length": 24, "checkpointing": {"name": name}}
    base.update(kw)
    return TrainConfig.model_validate(base)


KILL_ROWS = 320  # enough steps that the driver is killed well inside epoch 2


def _snapshot_has(run: Path, checkpoint: str) -> bool:
    snap = run / "checkpoint_manager_snapshot.json"
    try:
        return checkpoint in snap.read_text()
    except OSError:
        return False


def test_ddp_two_workers_checkpoints_and_killed_driver_resumes(ray_local, tmp_path: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from distill.train.stage import fit

    gcs = ray_local.get_runtime_context().gcs_address
    run = tmp_path / "ddp"
    driver = subprocess.Popen([sys.executable, __file__, gcs, str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while not _snapshot_has(run, "epoch_0001"):  # epoch 1 registered with Ray
            assert driver.poll() is None, "the driver ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.1)
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    assert not (run / "epoch_0002").exists(), "killed too late: epoch 2 was already done"
    first = (run / "epoch_0001" / "trainer_state.json").read_text()
    mtime = (run / "epoch_0001" / "trainer_state.json").stat().st_mtime_ns

    result = fit(_config("ddp"), _rows(KILL_ROWS), storage_path=tmp_path)  # the same run again

    assert Path(result.checkpoint_dir) == run / "epoch_0002"
    assert [h["epoch"] for h in result.history] == [1, 2]
    # epoch 1 was not trained again: its checkpoint is untouched and the history carries it
    assert (run / "epoch_0001" / "trainer_state.json").stat().st_mtime_ns == mtime
    assert result.history[0] == json.loads(first)["history"][0]
    assert result.metrics["epoch"] == 2
    for key in ("loss", "lr", "tokens_per_s", "tokens_per_s_per_worker", "epoch_time_s"):
        assert isinstance(result.metrics[key], float)
    assert result.history[1]["loss"] < result.history[0]["loss"]
    for epoch in ("epoch_0001", "epoch_0002"):  # a checkpoint per epoch, loadable by transformers
        model = AutoModelForSeq2SeqLM.from_pretrained(run / epoch)
        tok = AutoTokenizer.from_pretrained(run / epoch)
        out = model.generate(**tok(["N0 apples and N1 more"], return_tensors="pt"), max_new_tokens=4)
        assert out.shape[0] == 1
    assert (run / "epoch_0002" / "training_state.pt").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_deepspeed_zero2_two_workers(ray_local, tmp_path: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM

    from distill.train.stage import fit

    cfg = _config("zero2", epochs=1, deepspeed={"enabled": True, "zero_stage": 2})
    result = fit(cfg, _rows(96), storage_path=tmp_path)
    ckpt = Path(result.checkpoint_dir)
    assert ckpt.name == "epoch_0001" and math.isfinite(result.metrics["loss"])
    shards = sorted(p.name for p in (ckpt / "deepspeed" / "state").iterdir())
    # ZeRO-2 partitions optimizer state: one shard per worker, merged into one checkpoint
    assert [s for s in shards if "optim_states" in s] == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]
    AutoModelForSeq2SeqLM.from_pretrained(ckpt)


def test_tree_student_with_ddp_two_workers(ray_local, tmp_path: Path) -> None:
    """The tree student under DDP, with steps where one worker's batch is single leaves and the
    other's equations, and steps where both are leaves (no row reaches the child and merge
    layers, yet every parameter must take part in every step's graph, else DDP waits for
    their gradients for ever); the checkpoint reads back through load_student and decodes
    well-formed equations."""
    from distill.equations import parse_prefix
    from distill.evaluate.config import InferenceConfig
    from distill.evaluate.infer import generate
    from distill.train.collate import epoch_batches
    from distill.train.stage import fit
    from distill.train.students import load_student
    from distill.train.tree import TreeModel

    student = {"kind": "scratch", "architecture": "tree",
               "model_overrides": {"hidden_size": 32, "embedding_size": 16}}
    cfg = _config("tree", epochs=1, batch_size=8, student=student)
    rows = _rows(64)
    first, second = ([epoch_batches(len(rows), 8, 0, cfg.seed, rank, 2)[step] for rank in (0, 1)]
                     for step in (0, 1))
    leaf_rows = set(first[0]) | set(second[0]) | set(second[1])  # step 1 mixed, step 2 leaves
    rows = [dict(r, target_text=f"N{i % 2}") if i in leaf_rows else r for i, r in enumerate(rows)]
    assert all(" " in rows[i]["target_text"] for i in first[1])  # rank 1's first batch: equations
    result = fit(cfg, rows, storage_path=tmp_path)
    assert math.isfinite(result.metrics["loss"])
    model, tok = load_student(result.checkpoint_dir)
    assert isinstance(model, TreeModel)
    outs = generate((model.eval(), tok), [r["source_text"] for r in rows[:8]],
                    InferenceConfig(max_new_tokens=8))
    for (text,) in outs:
        parse_prefix(text)


def test_device_inputs_in_a_ray_worker_and_on_the_driver(ray_local) -> None:
    """What the evaluation actors' device choice reads, in a real Ray worker: a worker that
    reserved no GPU is one (so it stays on the CPU even where CUDA is visible); the driver
    is not."""
    from distill.devices import current_device, runtime_device_inputs

    @ray_local.remote(num_cpus=0.5, num_gpus=0)
    def probe():
        return runtime_device_inputs(), current_device()

    inputs, device = ray_local.get(probe.remote())
    assert inputs["in_ray_worker"] is True and inputs["ray_gpu_ids"] == []
    assert device == "cpu"
    assert runtime_device_inputs()["in_ray_worker"] is False


if __name__ == "__main__":  # the driver that test_ddp_..._resumes kills
    import ray

    from distill.train.stage import fit

    ray.init(address=sys.argv[1], log_to_driver=False)
    fit(_config("ddp"), _rows(KILL_ROWS), storage_path=sys.argv[2])
