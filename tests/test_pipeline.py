"""The pipeline on a local Ray: the data stage writes its rows, the manifest, and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from distill.config import load_config
from distill.data.stage import read_problems
from distill.pipeline import run_pipeline

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.ray
def test_quickstart_data_stage_on_local_ray(ray_local, tmp_path: Path) -> None:
    cfg = load_config(REPO / "configs" / "quickstart.yaml")
    cfg.data.synthetic = cfg.data.synthetic.model_copy(update={"n_train": 300, "n_valid": 40, "n_test": 40})
    logs: list[str] = []
    manifest = run_pipeline(cfg, tmp_path / "run", log=logs.append)
    stage = manifest["stages"]["data"]
    assert stage["status"] == "complete"
    assert stage["counts"]["train_rows"] == 300
    assert stage["counts"]["eval_rows"] == {"synthetic:valid": 40, "synthetic:test": 40}
    on_disk = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert on_disk["stages"]["data"]["status"] == "complete" and on_disk["code_version"]
    train = read_problems(tmp_path / "run" / "data" / "train")
    assert train.num_rows == 300
    assert len(set(train.column("id").to_pylist())) == 300
    test = pq.read_table(tmp_path / "run" / "data" / "eval" / "synthetic_test")
    assert test.num_rows == 40
    # Same config again: the stage is skipped and nothing is rewritten.
    mtime = (tmp_path / "run" / "data" / "summary.json").stat().st_mtime_ns
    logs.clear()
    run_pipeline(cfg, tmp_path / "run", log=logs.append)
    assert any("skipped" in line for line in logs)
    assert (tmp_path / "run" / "data" / "summary.json").stat().st_mtime_ns == mtime
    # A changed data section re-runs the stage, replacing (not appending to) its rows.
    cfg.data.synthetic = cfg.data.synthetic.model_copy(update={"n_train": 200})
    run_pipeline(cfg, tmp_path / "run", log=logs.append)
    assert read_problems(tmp_path / "run" / "data" / "train").num_rows == 200


@pytest.mark.ray
def test_job_entry_point_runs_a_config(ray_local, tmp_path: Path) -> None:
    from jobs.pipeline import main

    cfg = tmp_path / "small.yaml"
    cfg.write_text(
        "name: small\n"
        "data:\n"
        "  synthetic: {n_train: 30, n_valid: 5, n_test: 5}\n"
        "  train: [{name: synthetic, split: train}]\n"
        "  eval: [{name: synthetic, split: test}]\n"
    )
    assert main(["--config", str(cfg), "--run-dir", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["stages"]["data"]["status"] == "complete"
