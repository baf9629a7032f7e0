"""What a run may touch and what it keys its stages on, checked without starting Ray: the run
directory (never someone else's folder, never a folder the manifest does not record), the run
name, the top-level seed, and the stage keys (config, input files, code version)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distill import provenance
from distill.cli import app
from distill.config import ConfigError, PipelineConfig, load_config
from distill.pipeline import RUN_FORMAT, RunDirError, open_run_dir, run_pipeline, stages_for
from distill.train.stage import final_student

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _tree(root: Path) -> dict[str, str]:
    """Every file under root -> sha256 of its bytes (what 'deletes nothing' compares)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _repo_copy(dest: Path) -> Path:
    """The repository as a user's clone has it (no venv, no runs, no caches)."""
    shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(
        ".venv", ".git", "runs", "__pycache__", ".pytest_cache", "*.egg-info", "data"))
    # the default dataset location, which `--run-dir .` used to delete
    (dest / "data" / "gsm8k").mkdir(parents=True)
    shutil.copy2(FIXTURES / "gsm8k" / "test.jsonl", dest / "data" / "gsm8k" / "test.jsonl")
    return dest


# ----------------------------------------------------------------------------- the run dir
def test_run_dir_dot_in_a_repo_refuses_and_deletes_nothing(tmp_path: Path, monkeypatch) -> None:
    repo = _repo_copy(tmp_path / "repo")
    before = _tree(repo)
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(app, ["run", "configs/quickstart.yaml", "--run-dir", "."])
    assert result.exit_code != 0
    assert "not empty and holds no manifest.json" in result.output
    assert _tree(repo) == before


@pytest.mark.parametrize("name", ["..", ".", "../elsewhere", "a/b", "a\\b", ""])
def test_run_names_that_leave_runs_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        PipelineConfig(name=name)


def test_an_existing_folder_is_used_only_when_it_is_a_run(tmp_path: Path) -> None:
    assert open_run_dir(tmp_path / "new") == {}
    (tmp_path / "empty").mkdir()
    assert open_run_dir(tmp_path / "empty") == {}
    (tmp_path / "empty" / "manifest.json.tmp").write_text("{")  # killed in its first write
    assert open_run_dir(tmp_path / "empty") == {}
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not empty"):
        open_run_dir(tmp_path / "notes")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text('{"name": "some other tool"}')
    with pytest.raises(RunDirError, match="not a mathdistill run manifest"):
        open_run_dir(tmp_path / "other")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="is a file"):
        open_run_dir(tmp_path / "file")
    run = {"format": RUN_FORMAT, "config": {}, "stages": {}}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(run))
    assert open_run_dir(tmp_path / "run") == run
    legacy = {"name": "q", "config": {}, "code_version": "abc", "stages": {}}
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(legacy))
    assert open_run_dir(tmp_path / "run") == legacy


def test_the_manifest_is_the_first_thing_a_run_writes(tmp_path: Path, monkeypatch) -> None:
    """A run killed right after it started must be able to start again in its folder."""
    import distill.pipeline as pipeline

    def killed(config, path):
        raise KeyboardInterrupt  # stands for a kill while the config file is written

    monkeypatch.setattr(pipeline, "dump_config", killed)
    cfg = PipelineConfig(name="x")
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg, tmp_path / "run", log=lambda s: None)
    assert open_run_dir(tmp_path / "run")["format"] == RUN_FORMAT


def test_a_stage_folder_the_manifest_does_not_record_is_left_alone(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "data").mkdir(parents=True)
    (run_dir / "data" / "precious.parquet").write_bytes(b"not this run's")
    (run_dir / "manifest.json").write_text(json.dumps(
        {"format": RUN_FORMAT, "config": {}, "stages": {}}))
    before = _tree(run_dir)
    cfg = PipelineConfig(name="x", data={"train": [{"name": "synthetic", "split": "train"}]})
    with pytest.raises(RunDirError, match="does not record stage 'data'"):
        run_pipeline(cfg, run_dir, log=lambda s: None)
    assert _tree(run_dir) == before


# ------------------------------------------------------------------------------------- seed
def test_the_run_seed_seeds_every_stage_that_sets_none() -> None:
    cfg = PipelineConfig(name="x", seed=7, teacher="generate",
                         generate={"engine": "hf", "model": "m", "strategy": "pot"},
                         train={"target": "pot", "seed": 3})
    assert cfg.data.synthetic.seed == 7
    assert cfg.evaluate.inference.seed == 7
    assert cfg.generate.sampling.seed == 7
    assert cfg.train.seed == 3  # set by the config itself: kept
    again = PipelineConfig.model_validate(cfg.model_dump(mode="json"))
    assert (again.data.synthetic.seed, again.train.seed) == (7, 3)


def test_changing_the_run_seed_changes_the_data_and_train_keys() -> None:
    base = load_config(REPO / "configs" / "quickstart.yaml").model_dump(mode="json")
    for section in (base["data"]["synthetic"], base["train"], base["evaluate"]["inference"]):
        section.pop("seed", None)
    keys = {}
    for seed in (0, 1):
        cfg = PipelineConfig.model_validate({**base, "seed": seed})
        upstream, keys[seed] = "", []
        for stage in stages_for(cfg):
            upstream, _ = stage.key(cfg, upstream)
            keys[seed].append(upstream)
    assert all(a != b for a, b in zip(keys[0], keys[1]))


# --------------------------------------------------------------------------------- the keys
def _gsm8k_config(data_dir: Path) -> PipelineConfig:
    return PipelineConfig(name="x", teacher="gold", train={"target": "equation_prefix"},
                          data={"data_dir": str(data_dir),
                                "train": [{"name": "gsm8k", "split": "test", "limit": 3}]})


def test_the_data_key_follows_the_files_not_the_folder(tmp_path: Path) -> None:
    def data_key(folder: Path) -> str:
        cfg = _gsm8k_config(folder)
        return stages_for(cfg)[0].key(cfg, "")[0]

    first, same, edited = (tmp_path / n for n in ("first", "same", "edited"))
    for folder in (first, same, edited):
        shutil.copytree(FIXTURES / "gsm8k", folder / "gsm8k")
    line = (edited / "gsm8k" / "test.jsonl").read_text().splitlines()
    (edited / "gsm8k" / "test.jsonl").write_text("\n".join(line[:1] + line[:-1]) + "\n")
    assert data_key(first) == data_key(same)  # same bytes, other folder: reuse is right
    assert data_key(first) != data_key(edited)


def test_a_user_file_source_is_keyed_on_its_content(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('{"q": "Tom has 3 apples and buys 4. How many?", "a": "7"}\n')
    cfg = PipelineConfig(name="x", data={"train": [
        {"name": "mine", "path": str(path), "columns": {"question": "q", "answer": "a"}}]})
    before = stages_for(cfg)[0].key(cfg, "")[0]
    path.write_text('{"q": "Tom has 3 apples and buys 5. How many?", "a": "8"}\n')
    assert stages_for(cfg)[0].key(cfg, "")[0] != before


def test_the_generate_key_includes_the_sandbox_limits() -> None:
    def generate_key(timeout_s: float) -> str:
        cfg = PipelineConfig(name="x", teacher="generate", train={"target": "pot"},
                             generate={"engine": "hf", "model": "m", "strategy": "pot"},
                             sandbox={"timeout_s": timeout_s})
        stage = next(s for s in stages_for(cfg) if s.name == "generate")
        return stage.key(cfg, "")[0]

    assert generate_key(5) != generate_key(1)


def test_code_version_follows_the_source_a_stage_imports(tmp_path: Path, monkeypatch) -> None:
    copy = tmp_path / "distill"
    shutil.copytree(REPO / "distill", copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "_ROOT", copy)
    provenance.module_closure.cache_clear()
    try:
        sft = ("distill.sft.core",)
        closure = {p.relative_to(copy).as_posix() for p in provenance.module_closure(sft)}
        # its own imports, at any depth (equations is imported by a function body)
        assert {"sft/core.py", "equations.py", "quantities/__init__.py", "quantities/answers.py",
                "__init__.py"} <= closure
        assert "sandbox/pool.py" not in closure
        before_sft = provenance.code_version(sft)
        before_sandbox = provenance.code_version(["distill.sandbox"])
        with (copy / "equations.py").open("a") as f:
            f.write("\n# an edit\n")
        provenance.module_closure.cache_clear()
        assert provenance.code_version(sft) != before_sft
        assert provenance.code_version(["distill.sandbox"]) == before_sandbox
        with pytest.raises(ValueError, match="not a module"):
            provenance.module_closure(("distill.no_such_stage",))
    finally:
        provenance.module_closure.cache_clear()


def test_the_final_student_is_found_in_a_moved_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="train stage has not completed"):
        final_student(run)
    (run / "train" / "student" / "epoch_0003").mkdir(parents=True)
    (run / "train" / "result.json").write_text(json.dumps(
        {"checkpoint_dir": "train/student/epoch_0003"}))
    moved = tmp_path / "elsewhere"
    shutil.move(run, moved)
    assert final_student(moved) == moved / "train" / "student" / "epoch_0003"
    # a run written with an absolute path (before 2026-12-03) still names its checkpoint
    (moved / "train" / "result.json").write_text(json.dumps({"checkpoint_dir": "/abs/epoch_0009"}))
    assert final_student(moved) == Path("/abs/epoch_0009")


def test_a_run_on_a_cluster_must_isolate_its_programs_and_keeps_its_stage_keys() -> None:
    """Joining a Ray cluster (ray.address set, or RAY_ADDRESS as `ray job submit` gives every
    entry point) makes a sandbox left at 'auto' require namespaces; 'none' given explicitly
    stays; a local run is unchanged; and where a run executes never changes its stages' keys
    (a run resumed on a cluster keeps its rows)."""
    from distill.pipeline import for_where_it_runs, stages_for

    base = load_config(REPO / "configs" / "quickstart.yaml")
    assert base.ray.joins_a_cluster({}) is False
    assert base.ray.joins_a_cluster({"RAY_ADDRESS": "10.0.0.1:6379"}) is True
    remote = base.model_copy(update={"ray": base.ray.model_copy(update={"address": "auto"})})
    assert remote.ray.joins_a_cluster({}) is True
    local = for_where_it_runs(base, {})
    assert local.sandbox.require_namespaces is False
    on_cluster = for_where_it_runs(base, {"RAY_ADDRESS": "10.0.0.1:6379"})
    assert on_cluster.sandbox.require_namespaces is True
    assert for_where_it_runs(remote, {}).sandbox.require_namespaces is True
    unisolated = base.model_copy(update={"sandbox": base.sandbox.model_copy(
        update={"isolation": "none"})})
    assert for_where_it_runs(unisolated, {"RAY_ADDRESS": "x"}).sandbox.require_namespaces is False

    def keys(cfg):
        out, upstream = [], ""
        for stage in stages_for(cfg):
            upstream = stage.key(cfg, upstream)[0]
            out.append(upstream)
        return out

    assert keys(on_cluster) == keys(local)


def test_a_parse_another_thread_tripped_is_tried_again(monkeypatch) -> None:
    """CPython 3.11's parser can fail a parse that races another thread's (a stage key is
    computed while Ray Data's poller formats a traceback): the key's parse is tried again; any
    other SystemError is raised."""
    import ast

    from distill import provenance

    real, calls = ast.parse, []

    def flaky(source, filename="<unknown>"):
        calls.append(filename)
        if len(calls) <= 2:
            raise SystemError("AST constructor recursion depth mismatch (before=33, after=73)")
        return real(source, filename=filename)

    monkeypatch.setattr(ast, "parse", flaky)
    assert isinstance(provenance._parse("import distill.records", "f.py"), ast.Module)
    assert calls == ["f.py"] * 3
    monkeypatch.setattr(ast, "parse", lambda *a, **k: (_ for _ in ()).throw(SystemError("other")))
    with pytest.raises(SystemError, match="other"):
        provenance._parse("x = 1", "g.py")
