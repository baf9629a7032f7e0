"""Configs: every shipped file validates; bad files get errors naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.config import (
    ConfigError,
    DataConfig,
    PipelineConfig,
    RayConfig,
    dump_config,
    load_config,
)
from distill.pipeline import stages_for

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, PipelineConfig)
    assert cfg.data.train, f"{path.name} trains on nothing"


def test_ray_config_file_validates() -> None:
    ray = load_config(REPO / "ray_config.yaml", RayConfig)
    assert "train" in ray.resources
    # the embedded default runs on a CPU laptop: a stage asking for a GPU would wait forever
    assert all(r.num_gpus == 0 for r in ray.resources.values())
    gpu = load_config(REPO / "configs" / "gsm8k_kpdd_pot.yaml")
    assert gpu.ray.for_stage("generate").num_gpus >= 1 and gpu.ray.for_stage("train").num_gpus >= 1
    # its FDD rounds: a vLLM teacher writes the problems; they are solved with the run's KPDD-PoT
    assert (gpu.fdd.teacher, gpu.fdd.llm.generate.engine, gpu.generate.strategy) == (
        "llm", "vllm", "kpdd_pot")
    assert ray.for_stage("no-such-stage").num_cpus == 1.0  # defaults for unlisted stages


def test_pipeline_config_reads_ray_file_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ray.yaml").write_text("address: auto\nnum_cpus: 3\n")
    cfg_path = tmp_path / "sub" / "run.yaml"
    cfg_path.write_text("name: x\nray: ray.yaml\ndata:\n  train: [{name: synthetic, split: train}]\n")
    cfg = load_config(cfg_path)
    assert cfg.ray.address == "auto" and cfg.ray.num_cpus == 3
    assert cfg.ray.init_kwargs()["address"] == "auto"


def test_round_trip_yaml(tmp_path: Path) -> None:
    cfg = PipelineConfig(name="rt", data=DataConfig(train=[{"name": "gsm8k", "split": "train"}]))
    dump_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize(
    "text, must_name",
    [
        ("name: x\ndata:\n  trian: []\n", "data.trian: unknown key"),
        ("name: x\ndata:\n  train: [{name: gsm8k, split: ''}]\n", "data.train[0].split"),
        ("name: x\ndata:\n  train: [{name: gsm8k, limit: -3}]\n", "data.train[0].limit"),
        ("name: x\ndata:\n  constants: ['1', 'pi-ish']\n", "data.constants"),
        ("name: x\nray:\n  resources: {train: {num_gpus: -1}}\n", "ray.resources.train.num_gpus"),
        ("data: {}\n", "name: Field required"),
        ("name: x\ndata: [1, 2\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_bad_file_error_names_file_and_key(tmp_path: Path, text: str, must_name: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert must_name in message


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no-such.yaml: no such file"):
        load_config(tmp_path / "no-such.yaml")


def test_local_ray_init_kwargs_do_not_ship_runtime_env() -> None:
    ray = RayConfig(num_cpus=2, runtime_env={"env_vars": {"A": "1"}})
    assert ray.init_kwargs() == {"namespace": "mathdistill", "ignore_reinit_error": True, "num_cpus": 2}
    client = RayConfig(address="ray://head:10001", runtime_env={"env_vars": {"A": "1"}})
    assert client.init_kwargs()["runtime_env"] == {"env_vars": {"A": "1"}}


def test_every_stage_has_a_config_section() -> None:
    search = PipelineConfig(name="s")
    assert [s.name for s in stages_for(search)] == ["data", "search", "sft", "train", "evaluate"]
    gold = PipelineConfig(name="g", teacher="gold")
    assert [s.name for s in stages_for(gold)] == ["data", "sft", "train", "evaluate"]
    for stage in stages_for(search):
        assert isinstance(stage.section(search), dict), stage.name


def test_a_round_key_does_not_depend_on_how_many_rounds_follow() -> None:
    """One more round added to a finished run runs that round only; any other change to the
    rounds' section changes every round's key."""
    from distill.fdd.config import FDDConfig
    from distill.refine.config import RefineConfig

    def keys(refine: dict, fdd: dict) -> dict[str, str]:
        config = PipelineConfig(name="r", refine=RefineConfig(**refine), fdd=FDDConfig(**fdd))
        out, key = {}, ""
        for stage in stages_for(config):
            key, _ = stage.key(config, key)
            out[stage.name] = key
        return out

    two = keys({"rounds": 2}, {"rounds": 1})
    three = keys({"rounds": 3}, {"rounds": 1})
    assert [k for k in three if k not in two] == ["refine_3"]
    assert {k: three[k] for k in ("refine_1", "refine_2")} == \
        {k: two[k] for k in ("refine_1", "refine_2")}
    assert three["fdd_1"] != two["fdd_1"]  # it follows refine_3 now: the chain
    assert keys({"rounds": 2}, {"rounds": 2})["fdd_1"] == two["fdd_1"]
    other = keys({"rounds": 2, "epochs": 4}, {"rounds": 1})
    assert other["refine_1"] != two["refine_1"] and other["evaluate"] == two["evaluate"]


def test_cluster_manifests_run_existing_entry_points() -> None:
    import yaml

    job = yaml.safe_load((REPO / "cluster" / "kuberay" / "rayjob-quickstart.yaml").read_text())
    assert job["kind"] == "RayJob" and job["spec"]["rayClusterSpec"]["rayVersion"] == "2.60.0"
    argv = job["spec"]["entrypoint"].split()
    assert argv[:3] == ["python", "-m", "jobs.pipeline"]
    config = argv[argv.index("--config") + 1]
    assert isinstance(load_config(REPO / config), PipelineConfig)
