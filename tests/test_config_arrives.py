"""Every config value reaches the code path it configures.

Each sandbox key and each StageResources key is set to a distinctive value and followed to
where it is used: the SandboxPool a path builds (generate/verify, evaluate, run_program), the
``map_batches`` arguments of search, generate and evaluate (a fake dataset records them and
stops the run with a sentinel, so no Ray work is done), the trainer's ScalingConfig, and the
stage CLIs (``--config`` pipeline file, ``--ray`` file) with the stage function replaced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from distill.resources import GIB, StageResources
from distill.sandbox import SandboxConfig

# every plain-valued SandboxConfig field, each off its default
SANDBOX = {
    "timeout_s": 7.25, "memory_mb": 777, "workers": 3, "stdout_limit": 4321,
    "isolation": "unshare", "ast_check": False, "allowed_imports": ["math", "fractions"],
    "preload": ["math"], "seccomp": False, "scratch_mb": 33, "fsize_mb": 7, "nofile": 77,
    "nproc": 55, "max_code_chars": 12345, "max_answer_chars": 999, "uid_base": 1_879_048_300,
    "startup_timeout_s": 42.0, "grace_s": 1.5, "light_workers": False, "warmup": False,
    "require_namespaces": True,
}
# every StageResources field, each off its default
RESOURCES = {"num_cpus": 0.5, "num_gpus": 0.25, "memory_gb": 1.5, "concurrency": 3}


def _ray_args(res: dict[str, Any]) -> dict[str, Any]:
    return {"num_cpus": res["num_cpus"], "num_gpus": res["num_gpus"],
            "memory": int(res["memory_gb"] * GIB)}


def test_the_distinctive_values_cover_every_field() -> None:
    assert set(SANDBOX) == set(SandboxConfig.model_fields)
    assert set(RESOURCES) == set(StageResources.model_fields)
    default = SandboxConfig().model_dump(mode="json")
    mine = SandboxConfig(**SANDBOX).model_dump(mode="json")
    assert [k for k in SANDBOX if default[k] == mine[k]] == []
    assert [k for k, v in RESOURCES.items() if StageResources.model_fields[k].default == v] == []


class Sentinel(Exception):
    """Stops a path where the value was seen."""


class FakeDataset:
    """Stands for a Ray Dataset: records ``map_batches`` and stops there."""

    def __init__(self, seen: list[dict[str, Any]]):
        self.seen = seen

    def map_batches(self, fn, **kwargs):
        self.seen.append({"fn": fn, **kwargs})
        raise Sentinel


@pytest.fixture
def map_batches(monkeypatch):
    """ray.data.from_items / from_arrow give a FakeDataset; returns the recorded calls."""
    import ray.data

    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(ray.data, "from_items", lambda *a, **k: FakeDataset(seen))
    monkeypatch.setattr(ray.data, "from_arrow", lambda *a, **k: FakeDataset(seen))
    return seen


@pytest.fixture
def pools(monkeypatch):
    """SandboxPool.__init__ records its config and stops there."""
    from distill.sandbox import pool as pool_mod

    seen: list[SandboxConfig] = []

    def init(self, config=None, **overrides):
        seen.append(config)
        raise Sentinel

    monkeypatch.setattr(pool_mod.SandboxPool, "__init__", init)
    return seen


def _assert_pool_args(call: dict[str, Any], res: dict[str, Any] = RESOURCES) -> None:
    for key, value in _ray_args(res).items():
        assert call.get(key) == value, (key, call)
    compute = call["compute"]
    assert (compute.min_size, compute.max_size) == (res["concurrency"], res["concurrency"])


PROBLEMS = [{"id": f"p/{i}", "question": f"Tom has {i} apples and gets 2 more. How many?",
             "masked_question": "Tom has N0 apples and gets N1 more. How many?",
             "quantities": [str(i), "2"], "answer": str(i + 2), "answer_raw": str(i + 2),
             "equation": "N0 + N1", "lang": "en", "source": "t", "split": "train"}
            for i in range(1, 6)]


# ------------------------------------------------------------------------------- resources
def test_one_translator() -> None:
    res = StageResources(**RESOURCES)
    assert res.ray_args() == _ray_args(RESOURCES)
    assert res.resources_per_worker() == {"CPU": 0.5, "GPU": 0.25, "memory": int(1.5 * GIB)}
    assert res.pool_size() == 3 and res.pool_size(default=1, cap=2) == 2
    assert StageResources().ray_args() == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert StageResources().pool_size(default=1) == 1
    from distill.config import StageResources as Reexported

    assert Reexported is StageResources


def test_search_map_batches_get_every_resource_and_a_json_config(map_batches) -> None:
    from distill.search import SearchConfig, search_dataset

    cfg = SearchConfig(max_ops=2, top_n=7)
    with pytest.raises(Sentinel):
        search_dataset(PROBLEMS, cfg, resources=StageResources(**RESOURCES))
    (call,) = map_batches
    _assert_pool_args(call)
    assert call["fn_constructor_kwargs"]["config"] == cfg.model_dump(mode="json")


def _pot_config(**kw):
    from distill.generate.config import GenerateConfig

    return GenerateConfig(model="m", strategy="pot", batch_size=2, **kw)


def test_generate_map_batches_get_every_resource_and_json_configs(map_batches, monkeypatch,
                                                                 pools, tmp_path) -> None:
    from distill.generate import stage
    from distill.generate.engines.openai import OpenAIEngine

    monkeypatch.setattr(OpenAIEngine, "check_ready", staticmethod(lambda config: None))
    cfg, box = _pot_config(), SandboxConfig(**SANDBOX)
    with pytest.raises(Sentinel):
        stage.generate_dataset(PROBLEMS, cfg, tmp_path / "out", sandbox=box,
                               resources=StageResources(**RESOURCES))
    (call,) = map_batches
    _assert_pool_args(call)
    kwargs = call["fn_constructor_kwargs"]
    assert kwargs["config"] == cfg.model_dump(mode="json")
    assert kwargs["sandbox"] == box.model_dump(mode="json")
    # what the actor builds from them: the verifier's pool gets every sandbox key
    with pytest.raises(Sentinel):
        stage.VerifyUDF(kwargs["config"], kwargs["sandbox"])
    assert pools[-1].model_dump(mode="json") == box.model_dump(mode="json")


def test_verify_map_batches_after_a_dataset_level_engine(map_batches, monkeypatch, tmp_path) -> None:
    from distill.generate import engines, stage

    class DatasetEngine:
        dataset_level = True

        @staticmethod
        def resolve_chat(config):
            return True

        @staticmethod
        def run_dataset(ds, config, chat, resources=None):
            return ds

    monkeypatch.setattr(engines, "get_engine_class", lambda name: DatasetEngine)
    verify = {"num_cpus": 0.75, "num_gpus": 0.5, "memory_gb": 2.5, "concurrency": 2}
    with pytest.raises(Sentinel):
        stage.generate_dataset(PROBLEMS, _pot_config(), tmp_path / "out",
                               resources=StageResources(**RESOURCES),
                               verify_resources=StageResources(**verify))
    (call,) = map_batches
    assert call["fn"] is stage.VerifyUDF
    _assert_pool_args(call, verify)


def test_generate_local_path_builds_its_pool_from_the_sandbox_config(monkeypatch, pools,
                                                                    tmp_path) -> None:
    from distill.generate import engines, stage
    from distill.generate.engines.openai import OpenAIEngine

    class Engine:
        chat = True

        def close(self):
            pass

    monkeypatch.setattr(OpenAIEngine, "check_ready", staticmethod(lambda config: None))
    monkeypatch.setattr(engines, "build_engine", lambda config: Engine())
    box = SandboxConfig(**SANDBOX)
    with pytest.raises(Sentinel):
        stage.generate_dataset(PROBLEMS, _pot_config(), tmp_path / "out", sandbox=box, local=True)
    assert pools[-1].model_dump(mode="json") == box.model_dump(mode="json")


def test_evaluate_map_batches_get_every_resource(map_batches, tmp_path) -> None:
    from distill.evaluate.config import EvaluateConfig
    from distill.evaluate.stage import evaluate_student

    cfg = EvaluateConfig(batch_size=1)
    with pytest.raises(Sentinel):
        evaluate_student(tmp_path / "student", {"t": PROBLEMS}, "pot", cfg, tmp_path / "out",
                         resources=StageResources(**RESOURCES))
    (call,) = map_batches
    _assert_pool_args(call)
    assert call["fn_constructor_kwargs"]["config"] == cfg.inference.model_dump(mode="json")


def test_evaluate_builds_its_pool_from_the_sandbox_config(monkeypatch, pools, tmp_path) -> None:
    from distill.evaluate import stage
    from distill.evaluate.config import EvaluateConfig

    monkeypatch.setattr(stage, "generate_on_ray",
                        lambda student, rows, *a: [["ans = 1"] for _ in rows])
    box = SandboxConfig(**SANDBOX)
    with pytest.raises(Sentinel):
        stage.evaluate_student(tmp_path / "student", {"t": PROBLEMS}, "pot", EvaluateConfig(),
                               tmp_path / "out", sandbox=box)
    assert pools[-1].model_dump(mode="json") == box.model_dump(mode="json")


def test_trainer_scaling_config_gets_every_resource(monkeypatch, tmp_path) -> None:
    import ray.train.torch

    from distill.train import stage as trainer
    from distill.train.config import TrainConfig

    seen: dict[str, Any] = {}

    def fake_trainer(*args, **kwargs):
        seen.update(kwargs)
        raise Sentinel

    monkeypatch.setattr(trainer, "stage_initial_student", lambda cfg, texts, target: "init")
    monkeypatch.setattr(ray.train.torch, "TorchTrainer", fake_trainer)
    rows = [{"problem_id": "a", "stage": "solve", "source_text": "q", "target_text": "t"}]
    cfg = TrainConfig(num_workers=2)
    with pytest.raises(Sentinel):
        trainer.fit(cfg, rows, storage_path=tmp_path, resources=StageResources(**RESOURCES))
    scaling = seen["scaling_config"]
    assert scaling.num_workers == 2 and scaling.use_gpu
    assert scaling.resources_per_worker == {"CPU": 0.5, "GPU": 0.25, "memory": int(1.5 * GIB)}
    assert seen["torch_config"].backend == "nccl"


# ---------------------------------------------------------------------------- run_program
def test_run_program_takes_its_limits_from_the_config(monkeypatch) -> None:
    from distill.sandbox import pool as pool_mod

    seen: list[tuple[float, int]] = []
    configs: list[SandboxConfig] = []
    real_init = pool_mod.SandboxPool.__init__

    def init(self, config=None, **overrides):
        configs.append(config)
        real_init(self, config, **overrides)

    def job(self, code, timeout_s, memory_mb):
        seen.append((timeout_s, memory_mb))
        raise Sentinel

    monkeypatch.setattr(pool_mod.SandboxPool, "__init__", init)
    monkeypatch.setattr(pool_mod.SandboxPool, "start", lambda self: None)
    monkeypatch.setattr(pool_mod._Job, "__init__", job)
    monkeypatch.setattr(pool_mod, "_DEFAULT_POOLS", {})
    box = SandboxConfig(**SANDBOX)
    for run in (lambda: pool_mod.run_program("ans = 1", config=box),
                lambda: pool_mod.run_programs(["ans = 1"], config=box),
                lambda: pool_mod.default_pool(box).run("ans = 1"),
                lambda: pool_mod.default_pool(box).run_many(["ans = 1"])):
        with pytest.raises(Sentinel):
            run()
    assert seen == [(7.25, 777)] * 4
    assert configs[0].model_dump(mode="json") == box.model_dump(mode="json")
    with pytest.raises(Sentinel):  # an explicit limit still wins
        pool_mod.run_program("ans = 1", timeout_s=1.0, memory_mb=64, config=box)
    assert seen[-1] == (1.0, 64)


# ------------------------------------------------------------------------------------ CLI
RAY_FILE = {"address": "auto", "namespace": "from-ray-file",
            "resources": {"search": RESOURCES, "generate": RESOURCES,
                          "verify": {"num_cpus": 0.75, "num_gpus": 0.5, "memory_gb": 2.5,
                                     "concurrency": 2}}}


def _files(tmp_path: Path, ray_inline: bool = True) -> tuple[Path, Path]:
    ray_file = tmp_path / "ray.yaml"
    ray_file.write_text(yaml.safe_dump(RAY_FILE))
    pipeline = {
        "name": "arrives", "seed": 11,
        "ray": {"namespace": "from-pipeline", "resources": {"search": {"num_cpus": 2}}}
        if ray_inline else "ray.yaml",
        "search": {"max_ops": 2, "top_n": 7, "mode": "minimal"},
        "generate": {"model": "from-file", "strategy": "pot", "samples": 3,
                     "sampling": {"temperature": 0.25}},
        "sandbox": SANDBOX,
    }
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(pipeline))
    return config, ray_file


@pytest.fixture
def cli(monkeypatch):
    """The mounted CLI with Ray's start and the stage functions replaced by recorders."""
    import distill.cli_common as common
    import distill.generate.stage as gen_stage
    import distill.search.stage as search_stage
    from distill.cli import app

    seen: dict[str, Any] = {}
    monkeypatch.setattr(common, "init_ray", lambda ray_cfg: seen.__setitem__("ray", ray_cfg))

    def search(rows, cfg, out, against_gold=False, resources=None):
        seen.update(search=cfg, resources=resources, rows=len(rows))
        return {"problems": len(rows)}

    def generate(problems, cfg, out, **kwargs):
        seen.update(generate=cfg, rows=len(problems), **kwargs)
        return {"rows": 0}

    monkeypatch.setattr(search_stage, "search_dataset", search)
    monkeypatch.setattr(gen_stage, "generate_dataset", generate)
    runner = CliRunner()
    return lambda *args: (runner.invoke(app, list(args)), seen)


DATA = ("--data", "synthetic", "--split", "test", "--limit", "3")


def test_search_cli_config_and_ray_arrive(cli, tmp_path) -> None:
    config, ray_file = _files(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    res, seen = cli("search", *DATA, "--out", str(out), "--config", str(config),
                    "--ray", str(ray_file), "--max-ops", "3", "--json")
    assert res.exit_code == 0, res.output
    cfg = seen["search"]
    assert (cfg.max_ops, cfg.top_n, cfg.mode) == (3, 7, "minimal")  # the option wins
    assert seen["resources"] == StageResources(**RESOURCES)  # --ray replaces the pipeline's
    assert seen["ray"].namespace == "from-ray-file" and seen["ray"].address == "auto"
    res, seen = cli("search", *DATA, "--out", str(out), "--config", str(config),
                    "--ray", str(ray_file), "--workers", "5", "--json")
    assert res.exit_code == 0, res.output
    assert seen["resources"] == StageResources(**{**RESOURCES, "concurrency": 5})


def test_search_cli_takes_the_pipeline_ray_section_without_ray(cli, tmp_path) -> None:
    config, _ = _files(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    res, seen = cli("search", *DATA, "--out", str(out), "--config", str(config), "--json")
    assert res.exit_code == 0, res.output
    assert seen["ray"].namespace == "from-pipeline" and seen["resources"].num_cpus == 2
    config, _ = _files(tmp_path, ray_inline=False)  # `ray: ray.yaml`, beside the config
    res, seen = cli("search", *DATA, "--out", str(out), "--config", str(config), "--json")
    assert res.exit_code == 0, res.output
    assert seen["resources"] == StageResources(**RESOURCES)


def test_generate_cli_config_and_ray_arrive(cli, tmp_path) -> None:
    config, ray_file = _files(tmp_path)
    res, seen = cli("generate", *DATA, "--out", str(tmp_path / "out"), "--config", str(config),
                    "--ray", str(ray_file), "--samples", "2", "--max-tokens", "99", "--json")
    assert res.exit_code == 0, res.output
    cfg = seen["generate"]
    assert (cfg.model, cfg.strategy, cfg.samples) == ("from-file", "pot", 2)
    assert (cfg.sampling.temperature, cfg.sampling.max_tokens, cfg.sampling.seed) == (0.25, 99, 11)
    assert seen["sandbox"].model_dump(mode="json") == SandboxConfig(**SANDBOX).model_dump(mode="json")
    assert seen["resources"] == StageResources(**RESOURCES)
    assert seen["verify_resources"] == StageResources(**RAY_FILE["resources"]["verify"])
    assert seen["ray"].namespace == "from-ray-file"


def test_generate_cli_bad_files_are_clear_errors(cli, tmp_path) -> None:
    config, _ = _files(tmp_path)
    bad_ray = tmp_path / "bad_ray.yaml"
    bad_ray.write_text("resources: {search: {num_cpu: 1}}\n")
    res, _ = cli("generate", *DATA, "--out", str(tmp_path / "out"), "--config", str(config),
                 "--ray", str(bad_ray))
    assert res.exit_code == 2 and "bad_ray.yaml: resources.search.num_cpu: unknown key" in res.output
    res, _ = cli("generate", *DATA, "--out", str(tmp_path / "out"), "--config", str(config),
                 "--samples", "0")
    assert res.exit_code == 2 and "generate.samples" in res.output


def test_stage_option_help_comes_from_the_config_fields(cli) -> None:
    from distill.search.config import SearchConfig

    res, _ = cli("search", "--help")
    text = " ".join(res.output.replace("│", " ").split())
    assert " ".join(SearchConfig.model_fields["max_ops"].description.split()) in text
    assert "--ray" in text


def test_stages_import_neither_the_top_level_cli_nor_distill_config() -> None:
    """distill.config imports every stage's config and distill.cli mounts the stage commands:
    a stage module importing either (even inside a function) makes an import cycle. They
    import distill.resources and distill.cli_common instead."""
    import ast

    root = Path(__file__).resolve().parents[1] / "distill"
    bad = []
    for rel in ("search/cli.py", "search/stage.py", "generate/cli.py", "generate/stage.py",
                "evaluate/stage.py", "train/stage.py"):
        for node in ast.walk(ast.parse((root / rel).read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [(rel, n) for n in names if n in ("distill.cli", "distill.config")]
    assert bad == []
