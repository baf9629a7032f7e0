"""Run directories on an object store (distill.storage): every operation a run does on its
folder, against a real S3-compatible server on loopback (moto's, tests/s3_server.py). The whole
pipeline on S3, killed and resumed, is in test_pipeline.py."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distill.fileio import read_jsonl, write_atomic, write_jsonl, write_parquet_once
from distill.storage import RemotePath, local_copy, rmtree, run_location, upload_dir


def _names(paths) -> list[str]:
    return [p.name for p in paths]


def test_a_uri_is_a_remote_path_and_a_folder_stays_a_path(s3) -> None:
    from distill.config import PipelineConfig

    remote = run_location(s3.uri("runs", "a"))
    assert isinstance(remote, RemotePath) and str(remote) == s3.uri("runs", "a")
    assert run_location("runs/a") == Path("runs/a")
    cfg = PipelineConfig.model_validate({"name": "a", "run_dir": s3.uri("runs", "a") + "/"})
    assert str(cfg.resolved_run_dir()) == s3.uri("runs", "a")  # not Path's "s3:/…"
    assert str(remote / "train" / "result.json") == s3.uri("runs", "a", "train", "result.json")
    leaf = remote / "evaluate" / "report.json"
    assert (leaf.name, leaf.stem, leaf.suffix) == ("report.json", "report", ".json")
    assert leaf.parent == remote / "evaluate"
    assert leaf.with_name("report.md") == remote / "evaluate" / "report.md"
    assert leaf.relative_to(remote) == "evaluate/report.json"
    bucket = run_location(s3.uri())
    assert bucket.parent == bucket and str(remote.parent.parent) == s3.uri()


def test_files_and_folders_on_s3(s3) -> None:
    root = run_location(s3.uri("files"))
    assert not root.exists() and not root.is_dir()
    (root / "a").mkdir(parents=True, exist_ok=True)
    (root / "a" / "x.json").write_text('{"k": "ü"}')
    (root / "a" / "b" / "y.txt").write_bytes(b"why")
    (root / "c.txt").write_text("c")
    assert root.is_dir() and (root / "a").is_dir() and (root / "c.txt").is_file()
    assert not (root / "c.txt").is_dir() and not (root / "nothing").exists()
    assert json.loads((root / "a" / "x.json").read_text()) == {"k": "ü"}
    assert _names(root.iterdir()) == ["a", "c.txt"]
    assert _names((root / "a").iterdir()) == ["b", "x.json"]
    assert [str(p.relative_to(root)) for p in root.glob("*/*.json")] == ["a/x.json"]
    assert _names(root.glob("*.txt")) == ["c.txt"]
    with (root / "lines.txt").open("w") as f:
        f.write("one\ntwo\n")
    with (root / "lines.txt").open() as f:
        assert [line.rstrip("\n") for line in f] == ["one", "two"]
    (root / "c.txt").replace(root / "d.txt")
    assert not (root / "c.txt").exists() and (root / "d.txt").read_text() == "c"
    (root / "d.txt").unlink()
    (root / "d.txt").unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match="d.txt"):
        (root / "d.txt").read_text()
    with pytest.raises(FileNotFoundError):
        (root / "d.txt").unlink()


def test_rmtree_deletes_the_folder_and_nothing_beside_it(s3) -> None:
    """``run`` and ``run-b`` share a key prefix: removing one must leave the other."""
    for name in ("run", "run-b", "runx"):
        (run_location(s3.uri("rm", name)) / "f.txt").write_text(name)
    rmtree(run_location(s3.uri("rm", "run")))
    rmtree(run_location(s3.uri("rm", "never-there")))  # nothing to do
    left = sorted(str(p.relative_to(run_location(s3.uri("rm"))))
                  for p in run_location(s3.uri("rm")).glob("*/f.txt"))
    assert left == ["run-b/f.txt", "runx/f.txt"]


def test_the_run_files_are_written_once_and_read_back(s3) -> None:
    root = run_location(s3.uri("fileio"))
    write_atomic(root / "manifest.json", '{"a": 1}')
    assert (root / "manifest.json").read_text() == '{"a": 1}'
    rows = [{"id": "p/1", "outputs": ["+ N0 N1"]}, {"id": "p/2", "outputs": []}]
    write_jsonl(root / "r" / "candidates.jsonl", rows)
    assert read_jsonl(root / "r" / "candidates.jsonl") == rows
    schema = pa.schema([("id", pa.string()), ("n", pa.int64())])
    write_parquet_once(root / "examples.parquet", [{"id": "a", "n": 1}], schema)
    write_parquet_once(root / "examples.parquet", [{"id": "b", "n": 2}], schema)  # kept
    assert pq.read_table(str(root / "examples.parquet")).to_pylist() == [{"id": "a", "n": 1}]


def test_a_run_opens_only_an_empty_prefix_or_its_own(s3) -> None:
    from distill.pipeline import RunDirError, open_run_dir

    assert open_run_dir(run_location(s3.uri("open", "new"))) == {}
    foreign = run_location(s3.uri("open", "datasets"))
    (foreign / "gsm8k" / "train.jsonl").write_text("{}\n")
    with pytest.raises(RunDirError, match="not empty"):
        open_run_dir(foreign)
    mine = run_location(s3.uri("open", "mine"))
    manifest = {"format": "mathdistill-run/1", "config": {}, "stages": {}}
    (mine / "manifest.json").write_text(json.dumps(manifest))
    assert open_run_dir(mine) == manifest


def test_a_student_on_s3_loads_as_it_was_saved(s3, tmp_path) -> None:
    """What evaluation, refinement and serving do with a checkpoint a run wrote to S3."""
    import torch

    from distill.train.stage import stage_initial_student
    from distill.train.students import _auto_config, is_encoder_decoder, load_student
    from test_train import _config
    from training_helpers import sft_rows, synthetic_problems, texts_of

    rows = sft_rows(synthetic_problems(8))
    uri = s3.uri("students", "init")
    assert stage_initial_student(_config(), texts_of(rows), uri) == uri
    local = tmp_path / "init"
    local.mkdir()
    with local_copy(uri) as folder:
        names = sorted(p.name for p in folder.iterdir())
        upload_dir(folder, local)
    assert "config.json" in names and "model.safetensors" in names
    assert is_encoder_decoder(uri) and _auto_config(uri, False).model_type == "t5"
    remote_model, remote_tok = load_student(uri)
    local_model, local_tok = load_student(local)
    assert remote_tok("* N0 N1")["input_ids"] == local_tok("* N0 N1")["input_ids"]
    for (name, a), (_, b) in zip(remote_model.state_dict().items(),
                                 local_model.state_dict().items()):
        assert torch.equal(a, b), name


def test_the_default_run_directory_follows_mathdistill_runs(s3) -> None:
    """A job's working directory is thrown away: a cluster sets MATHDISTILL_RUNS to storage
    the nodes share, and runs without a run_dir go there."""
    from distill.config import PipelineConfig

    cfg = PipelineConfig.model_validate({"name": "gsm8k_kpdd"})
    assert cfg.resolved_run_dir({}) == Path("runs/gsm8k_kpdd")
    assert cfg.resolved_run_dir({"MATHDISTILL_RUNS": "/shared/runs/"}) == \
        Path("/shared/runs/gsm8k_kpdd")
    on_s3 = cfg.resolved_run_dir({"MATHDISTILL_RUNS": s3.uri("runs")})
    assert str(on_s3) == s3.uri("runs", "gsm8k_kpdd")
    pinned = PipelineConfig.model_validate({"name": "x", "run_dir": "/elsewhere/x"})
    assert pinned.resolved_run_dir({"MATHDISTILL_RUNS": "/shared/runs"}) == Path("/elsewhere/x")


def test_a_location_that_cannot_be_opened_is_a_user_error_naming_it() -> None:
    from distill.pipeline import user_errors
    from distill.storage import StorageError

    with pytest.raises(StorageError, match="nosuch://bucket/run: cannot open") as info:
        run_location("nosuch://bucket/run")
    assert isinstance(info.value, user_errors())


def test_a_run_on_s3_names_its_student_for_evaluate_and_serve(s3) -> None:
    """`mathdistill evaluate s3://…` and `mathdistill serve s3://…` read a run on the store as
    they read a local one: its final checkpoint, its training target and decoding, its
    serving section."""
    from distill.config import PipelineConfig, dump_config
    from distill.evaluate.cli import default_out
    from distill.evaluate.student import first_run_config, resolve_student
    from serve.app import serve_config_for

    run = run_location(s3.uri("runs", "served"))
    cfg = PipelineConfig.model_validate({"name": "served", "serve": {"port": 8123},
                                         "evaluate": {"inference": {"max_new_tokens": 20}}})
    dump_config(cfg, run / "config.yaml")
    (run / "manifest.json").write_text(json.dumps(
        {"format": "mathdistill-run/1", "config": {}, "stages": {}}))
    (run / "train" / "result.json").write_text(
        json.dumps({"checkpoint_dir": "train/student/epoch_0002"}))
    checkpoint = run / "train" / "student" / "epoch_0002"
    for name in ("config.json", "tokenizer_config.json"):
        (checkpoint / name).write_text("{}")
    spec = resolve_student(str(run))
    assert (spec.name, spec.checkpoint, spec.run_dir) == ("served", str(checkpoint), str(run))
    assert spec.target == cfg.train.target and spec.inference["max_new_tokens"] == 20
    by_checkpoint = resolve_student(str(checkpoint))  # a checkpoint inside a run finds the run
    assert (by_checkpoint.run_dir, by_checkpoint.target) == (str(run), cfg.train.target)
    assert str(first_run_config([str(run)])) == str(run / "config.yaml")
    assert serve_config_for([str(run)]).port == 8123
    assert default_out(checkpoint, run, "gsm8k:test") == run / "evaluations" / "gsm8k-test"
