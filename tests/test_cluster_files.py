"""The cluster files (``cluster/``) checked offline, the way their consumers check them; no
cloud, no Kubernetes, no network, no Ray cluster.

* Launcher configs (``cluster/aws.yaml``, ``cluster/gcp.yaml``): Ray's own
  ``prepare_config`` (merges the provider's ``defaults.yaml``, which ships inside Ray) and
  ``validate_config`` (``ray-schema.json``: no unknown keys, integer resources), the offline
  steps of ``ray up`` (``ray.autoscaler._private.commands._bootstrap_config``). Its other
  steps need a cloud SDK (neither boto3 nor googleapiclient is a dependency) and the network
  and are not run: ``fillout_available_node_types_resources``, between the two, asks EC2 for
  instance types (on GCP it only adds TPU resources), and ``bootstrap_config`` creates IAM
  roles, key pairs and firewall rules. So every node type states its resources, and the
  tests pin them.
* KubeRay manifests: each document against ``spec.versions[v1].schema.openAPIV3Schema`` of
  KubeRay v1.7.0's CRD (``../shared/vendor/kuberay-crds``; these tests skip without it) with
  Kubernetes' structural-schema semantics: a field the schema does not name is rejected (the
  API server prunes it, or refuses it under strict field validation),
  ``x-kubernetes-int-or-string`` takes an int or a string. Not covered: the CEL rules (``x-kubernetes-validations``), ``metadata`` (the CRD
  says only ``object``; the API server validates it) and the operator's own checks (e.g.
  ``authOptions`` needs ``rayVersion`` >= 2.52: pinned to 2.60.0 here).
* The RayService's ``serveConfigV2``: Ray Serve's ``ServeDeploySchema`` (pydantic v2 in Ray
  2.60, ``model_validate``), the project's strict check (``mathdistill serve-check``) and the
  builder its ``import_path`` names, imported (``serve.app`` imports neither Ray nor a model).
* The RayJobs' ``runtimeEnvYAML``: keys Ray's runtime_env knows (``RuntimeEnv`` itself takes
  any key, as a plugin's), then ``ray.runtime_env.RuntimeEnv(**env)``, which needs no cluster.
* Every ``python -m jobs.pipeline ...`` the files run or document is parsed by the real
  ``jobs.pipeline.main`` (the pipeline itself replaced), its config loaded, and the cluster that
  runs it checked to fit every stage's resource request.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import math
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from distill.config import PipelineConfig, RayConfig, load_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
CRD_DIR = REPO.parent / "shared" / "vendor" / "kuberay-crds"

RAY_VERSION = "2.60.0"
CPU_IMAGE = "REGISTRY/mathdistill:0.1.0"
GPU_IMAGE = "REGISTRY/mathdistill-gpu:0.1.0"
TOKEN_SECRET = "mathdistill-ray-token"

# ------------------------------------------------------------------------------------------
# Launcher configs
# ------------------------------------------------------------------------------------------

#: node type -> (resources, min_workers, max_workers) after prepare_config.
LAUNCHER_NODE_TYPES = {
    "aws.yaml": {
        "ray.head.default": ({"CPU": 0}, 0, 0),
        "ray.worker.cpu": ({"CPU": 16}, 0, 16),
        "ray.worker.gpu": ({"CPU": 8, "GPU": 1}, 0, 4),
    },
    "gcp.yaml": {
        "ray_head": ({"CPU": 0}, 0, 0),
        "ray_worker_cpu": ({"CPU": 16}, 0, 16),
        "ray_worker_gpu": ({"CPU": 8, "GPU": 1}, 0, 4),
    },
}
LAUNCHER_HEAD = {"aws.yaml": "ray.head.default", "gcp.yaml": "ray_head"}
LAUNCHER_HEAD_SETUP = {
    "aws.yaml": ["pip install 'boto3>=1.4.8'"],
    "gcp.yaml": ["pip install google-api-python-client==1.7.8"],
}
#: What `docker run` must get on every node: shared storage, token auth, the sandbox's needs.
LAUNCHER_RUN_OPTIONS = [
    "--ulimit nofile=65536:65536",
    "-v /mnt/mathdistill/data:/data:ro",
    "-v /mnt/mathdistill/runs:/runs",
    "-e MATHDISTILL_DATA_DIR=/data",
    "-e MATHDISTILL_RUNS=/runs",
    "-e RAY_AUTH_MODE=token",
    "--security-opt seccomp=unconfined",
    "--security-opt apparmor=unconfined",
    "--security-opt systempaths=unconfined",
]
LAUNCHER_FILE_MOUNTS = {"/home/ray/mathdistill": ".",
                        "/home/ray/.ray/auth_token": "~/.ray/auth_token"}
#: The configs each launcher file documents submitting.
LAUNCHER_CONFIGS = ["configs/gsm8k_kpdd_pot.yaml", "configs/math23k_weak_gpu.yaml"]


def _launcher(name: str) -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / name).read_text(encoding="utf-8"))


def _prepared(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as ``ray up`` sees it before contacting the cloud: Ray's prepare_config, then
    Ray's validate_config (raises jsonschema.ValidationError / ValueError when invalid)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.mark.parametrize("name", sorted(LAUNCHER_NODE_TYPES))
def test_launcher_config_passes_rays_validation_with_exact_node_types(name: str) -> None:
    prepared = _prepared(_launcher(name))
    assert prepared["head_node_type"] == LAUNCHER_HEAD[name]
    got = {t: (spec["resources"], spec["min_workers"], spec["max_workers"])
           for t, spec in prepared["available_node_types"].items()}
    assert got == LAUNCHER_NODE_TYPES[name]
    for t, (resources, _, _) in got.items():
        assert all(type(v) is int for v in resources.values()), (t, resources)
    # the global cap lets every worker type reach its maximum at once
    assert prepared["max_workers"] == sum(most for _, _, most in got.values()) == 20


@pytest.mark.parametrize("name", sorted(LAUNCHER_NODE_TYPES))
def test_launcher_installs_nothing_over_the_images(name: str) -> None:
    """The config's own keys replace Ray's defaults.yaml, whose setup_commands pip-install a
    nightly Ray wheel when `ray` is missing."""
    prepared = _prepared(_launcher(name))
    assert prepared["setup_commands"] == []
    assert prepared["worker_setup_commands"] == []
    # merge_setup_commands prepends setup_commands (empty) to the head's own
    assert prepared["head_setup_commands"] == LAUNCHER_HEAD_SETUP[name]
    every = [c for key in ("initialization_commands", "head_setup_commands",
                           "head_start_ray_commands", "worker_start_ray_commands")
             for c in prepared[key]]
    assert not [c for c in every if "ray-wheels" in c or "install -U" in c]


@pytest.mark.parametrize("name", sorted(LAUNCHER_NODE_TYPES))
def test_launcher_images_mounts_and_sandbox_options(name: str) -> None:
    config = _launcher(name)
    docker = config["docker"]
    assert docker["image"] == CPU_IMAGE
    assert docker["run_options"] == LAUNCHER_RUN_OPTIONS
    types = config["available_node_types"]
    gpu_types = [t for t, spec in types.items() if spec["resources"].get("GPU")]
    assert [types[t].get("docker") for t in gpu_types] == [{"worker_image": GPU_IMAGE}]
    assert all("docker" not in spec for t, spec in types.items() if t not in gpu_types)
    assert config["file_mounts"] == LAUNCHER_FILE_MOUNTS
    assert config["rsync_exclude"] == ["/.git/", "/.venv/", "/runs/", "/data/", "*.parquet"]
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_start
    assert "--dashboard-host=0.0.0.0" in head_start


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c["available_node_types"]["ray.worker.cpu"].update(min_worker=0),
     "Additional properties are not allowed ('min_worker' was unexpected)"),
    (lambda c: c["available_node_types"]["ray.worker.gpu"]["resources"].update(GPU=0.5),
     "0.5 is not of type 'integer'"),
    (lambda c: c["docker"].update(image_name="x"),
     "Additional properties are not allowed ('image_name' was unexpected)"),
])
def test_rays_launcher_validation_catches_typos_and_fractions(edit, message: str) -> None:
    """What the validation above is worth: Ray's schema refuses unknown keys and fractional
    resources."""
    import jsonschema

    config = _launcher("aws.yaml")
    edit(config)
    with pytest.raises(jsonschema.ValidationError) as err:
        _prepared(config)
    assert err.value.message == message


def test_gcp_scheduling_is_an_object_as_the_gce_api_wants() -> None:
    """Ray passes node_config to GCE unchanged; GCE's `scheduling` is an object (Ray's own
    examples write a list: ray-project/ray#46248). Preemptible VMs must not restart
    automatically; GPU VMs stop on host maintenance."""
    types = _launcher("gcp.yaml")["available_node_types"]
    scheduling = {t: spec["node_config"].get("scheduling") for t, spec in types.items()}
    assert scheduling == {
        "ray_head": None,
        "ray_worker_cpu": {"preemptible": True, "automaticRestart": False,
                           "onHostMaintenance": "TERMINATE"},
        "ray_worker_gpu": {"onHostMaintenance": "TERMINATE"},
    }


# ------------------------------------------------------------------------------------------
# KubeRay manifests: structural schemas from the CRDs
# ------------------------------------------------------------------------------------------

CRD_FILES = {
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
    "RayService": "ray.io_rayservices.yaml",
}
MANIFESTS = {
    "kuberay/raycluster.yaml": "RayCluster",
    "kuberay/rayjob-quickstart.yaml": "RayJob",
    "kuberay/rayjob-gsm8k-kpdd.yaml": "RayJob",
    "kuberay/rayservice.yaml": "RayService",
}


def structural(schema: Any) -> Any:
    """A copy of an OpenAPI v3 (CRD) schema with Kubernetes' structural-schema semantics made
    explicit for a JSON-schema validator:

    * an object schema with ``properties`` and neither ``additionalProperties`` nor
      ``x-kubernetes-preserve-unknown-fields: true`` gets ``additionalProperties: false``
      (Kubernetes prunes, or with strict field validation rejects, unknown fields);
    * an ``x-kubernetes-int-or-string`` schema without ``anyOf``/``type`` gets
      ``anyOf: [integer, string]`` (controller-gen writes the anyOf itself; KubeRay's do).

    Maps (``additionalProperties: {...}``) keep their own rule."""
    if isinstance(schema, list):
        return [structural(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: structural(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and out.get("x-kubernetes-preserve-unknown-fields") is not True):
        out["additionalProperties"] = False
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out and "type" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


def _validator(schema: dict[str, Any]):
    """A Draft 4 validator (OpenAPI v3's schema dialect is Draft 4's, plus extensions that a
    JSON-schema validator ignores) for ``schema`` made structural."""
    import jsonschema

    strict = structural(schema)
    jsonschema.Draft4Validator.check_schema(strict)
    return jsonschema.Draft4Validator(strict)


@functools.lru_cache(maxsize=None)
def _crd_schema(kind: str) -> dict[str, Any]:
    """The CRD's v1 openAPIV3Schema for ``kind`` (libyaml's loader: the files are 1-1.4 MB)."""
    path = CRD_DIR / CRD_FILES[kind]
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - safe loader
    assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == kind
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return v1["schema"]["openAPIV3Schema"]


@pytest.fixture(scope="module")
def crd():
    """kind -> structural validator; skips when ../shared/vendor/kuberay-crds is absent."""
    if not CRD_DIR.is_dir():
        pytest.skip("../shared/vendor/kuberay-crds is not present")
    return functools.lru_cache(maxsize=None)(lambda kind: _validator(_crd_schema(kind)))


def _errors(validator, doc: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))]


def _manifest(rel: str) -> dict[str, Any]:
    (doc,) = list(yaml.safe_load_all((CLUSTER / rel).read_text(encoding="utf-8")))
    return doc


@pytest.mark.parametrize("rel", sorted(MANIFESTS))
def test_manifest_validates_against_its_crd_with_unknown_fields_rejected(rel: str, crd) -> None:
    doc = _manifest(rel)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == MANIFESTS[rel]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])  # DNS-1035
    assert _errors(crd(doc["kind"]), doc) == []


TYPOS = {
    "rayStartParam": (("spec", "rayClusterSpec", "headGroupSpec"), "rayStartParams"),
    "replica": (("spec", "rayClusterSpec", "workerGroupSpecs", 0), "replicas"),
    "workingDirectory": (("spec", "rayClusterSpec", "headGroupSpec", "template", "spec",
                          "containers", 0), "workingDir"),
}


@pytest.mark.parametrize("typo", sorted(TYPOS))
def test_a_misspelled_field_fails_the_structural_schema_only(typo: str, crd) -> None:
    """A typo of an optional field, which KubeRay would silently drop: the CRD's schema as
    shipped accepts it (none of its object schemas closes its properties), the structural one
    names it. (A typo of a required field, e.g. minReplicas, fails either way.)"""
    import jsonschema

    where, field = TYPOS[typo]
    doc = copy.deepcopy(_manifest("kuberay/rayjob-gsm8k-kpdd.yaml"))
    node = functools.reduce(lambda n, k: n[k], where, doc)
    node[typo] = node.pop(field)
    path = ".".join(map(str, where))
    assert _errors(crd("RayJob"), doc) == [
        f"{path}: Additional properties are not allowed ({typo!r} was unexpected)"]
    assert list(jsonschema.Draft4Validator(_crd_schema("RayJob")).iter_errors(doc)) == []


@pytest.mark.parametrize(("schema", "value", "ok"), [
    ({"x-kubernetes-int-or-string": True}, 1, True),
    ({"x-kubernetes-int-or-string": True}, "1", True),
    ({"x-kubernetes-int-or-string": True}, 1.5, False),
    ({"x-kubernetes-int-or-string": True}, [1], False),
    ({"type": "object", "properties": {"a": {"type": "string"}}}, {"a": "x"}, True),
    ({"type": "object", "properties": {"a": {"type": "string"}}}, {"b": "x"}, False),
    ({"type": "object", "properties": {"a": {"type": "string"}},
      "x-kubernetes-preserve-unknown-fields": True}, {"b": "x"}, True),
    ({"type": "object", "additionalProperties": {"type": "string"}}, {"any-key": "x"}, True),
    ({"type": "object", "additionalProperties": {"type": "string"}}, {"any-key": 1}, False),
    ({"type": "object", "properties": {"m": {"type": "object", "properties": {
        "n": {"type": "integer"}}}}}, {"m": {"n": 1, "typo": 2}}, False),
])
def test_structural_schema_rules(schema: dict, value: Any, ok: bool) -> None:
    assert (_validator(schema).is_valid(value)) is ok


def test_gpu_quantity_is_int_or_string_in_the_crd(crd) -> None:
    """Resource quantities are x-kubernetes-int-or-string in the CRD: `nvidia.com/gpu: 1`
    and `"1"` pass, a list does not."""
    doc = copy.deepcopy(_manifest("kuberay/raycluster.yaml"))
    limits = doc["spec"]["workerGroupSpecs"][1]["template"]["spec"]["containers"][0][
        "resources"]["limits"]
    verdicts = []
    for value in (1, "1", [1]):
        limits["nvidia.com/gpu"] = value
        verdicts.append(crd("RayCluster").is_valid(doc))
    assert verdicts == [True, True, False]


# ------------------------------------------------------------------------------------------
# KubeRay manifests: what they say
# ------------------------------------------------------------------------------------------

#: The container security context every Ray pod gets (the sandbox's namespaces; see
#: cluster/kuberay/raycluster.yaml for why each entry is there).
SANDBOX_SECURITY = {
    "runAsUser": 1000,
    "runAsGroup": 100,
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "Unconfined"},
    "appArmorProfile": {"type": "Unconfined"},
    "procMount": "Unmasked",
}
RAY_MOUNTS = [
    {"name": "data", "mountPath": "/data", "readOnly": True},
    {"name": "runs", "mountPath": "/runs"},
    {"name": "dshm", "mountPath": "/dev/shm"},
]
RAY_VOLUMES = [
    {"name": "data", "persistentVolumeClaim": {"claimName": "mathdistill-data"}},
    {"name": "runs", "persistentVolumeClaim": {"claimName": "mathdistill-runs"}},
    {"name": "dshm", "emptyDir": {"medium": "Memory"}},
]
#: manifest -> group -> (replicas, minReplicas, maxReplicas, rayStartParams)
WORKER_GROUPS = {
    "kuberay/raycluster.yaml": {"cpu": (0, 0, 16, {}), "gpu": (0, 0, 4, {"num-gpus": "1"})},
    "kuberay/rayjob-gsm8k-kpdd.yaml": {"cpu": (0, 0, 16, {}),
                                       "gpu": (0, 0, 4, {"num-gpus": "1"})},
    "kuberay/rayjob-quickstart.yaml": {"cpu": (1, 0, 16, {})},
    "kuberay/rayservice.yaml": {"cpu": (1, 1, 8, {})},
}


def _cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    """The RayCluster spec inside any of the three kinds."""
    return {"RayCluster": lambda: doc["spec"], "RayJob": lambda: doc["spec"]["rayClusterSpec"],
            "RayService": lambda: doc["spec"]["rayClusterConfig"]}[doc["kind"]]()


def _groups(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """group name ("head" for the head) -> its group spec."""
    return {"head": spec["headGroupSpec"], **{g["groupName"]: g for g in spec["workerGroupSpecs"]}}


def _ray_resources(group: dict[str, Any]) -> dict[str, int]:
    """What Ray advertises for a group's pods: KubeRay's num-cpus / num-gpus start params, else
    the container's CPU limit and nvidia.com/gpu limit (whole units only here)."""
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    params = group["rayStartParams"]
    cpus = int(params.get("num-cpus", limits["cpu"]))
    gpus = int(params.get("num-gpus", limits.get("nvidia.com/gpu", 0)))
    return {"CPU": cpus, **({"GPU": gpus} if gpus else {})}


@pytest.mark.parametrize("rel", sorted(MANIFESTS))
def test_every_ray_pod_can_run_the_sandbox_and_sees_the_volumes(rel: str) -> None:
    spec = _cluster_spec(_manifest(rel))
    assert spec["rayVersion"] == RAY_VERSION
    assert spec["authOptions"] == {"mode": "token", "secretName": TOKEN_SECRET}
    assert spec["enableInTreeAutoscaling"] is True
    for name, group in _groups(spec).items():
        pod = group["template"]["spec"]
        assert pod["hostUsers"] is False, name
        (container,) = pod["containers"]
        assert container["securityContext"] == SANDBOX_SECURITY, name
        assert container["volumeMounts"] == RAY_MOUNTS, name
        assert pod["volumes"] == RAY_VOLUMES, name
        assert container["workingDir"] == "/home/ray/mathdistill", name
        gpu = _ray_resources(group).get("GPU", 0)
        assert container["image"] == (GPU_IMAGE if gpu else CPU_IMAGE), name
        assert container["resources"]["requests"] == container["resources"]["limits"], name


@pytest.mark.parametrize("rel", sorted(MANIFESTS))
def test_head_runs_no_work_and_worker_groups_are_exact(rel: str) -> None:
    groups = _groups(_cluster_spec(_manifest(rel)))
    head = groups.pop("head")
    assert head["rayStartParams"] == {"dashboard-host": "0.0.0.0", "num-cpus": "0"}
    got = {name: (g["replicas"], g["minReplicas"], g["maxReplicas"], g["rayStartParams"])
           for name, g in groups.items()}
    assert got == WORKER_GROUPS[rel]
    for name, g in groups.items():
        limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        if "num-gpus" in g["rayStartParams"]:  # the GPU Ray sees is the GPU the pod gets
            assert limits["nvidia.com/gpu"] == int(g["rayStartParams"]["num-gpus"]) == 1
            assert g["template"]["spec"]["tolerations"] == [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        else:
            assert "nvidia.com/gpu" not in limits, name


# ------------------------------------------------------------------------------------------
# Entry points and the resources they ask for
# ------------------------------------------------------------------------------------------

def _pipeline_commands(text: str) -> list[list[str]]:
    """Every `python -m jobs.pipeline ...` in ``text`` (a comment, an entrypoint, a README line)
    as an argv, up to the end of its line."""
    out = []
    for line in text.splitlines():
        at = line.find("python -m jobs.pipeline")
        if at >= 0:
            out.append(shlex.split(line[at:].rstrip().rstrip("\\")))
    return out


def _run_entry_point(argv: list[str], monkeypatch) -> tuple[PipelineConfig, str | None]:
    """Parse ``argv`` with the real ``jobs.pipeline.main`` (config loaded for real, relative
    to the repository root as under `ray job submit --working-dir .`), the pipeline replaced;
    returns what it would have run."""
    assert argv[:3] == ["python", "-m", "jobs.pipeline"], argv
    assert (REPO / "jobs" / "pipeline.py").is_file()
    jobs_pipeline = importlib.import_module("jobs.pipeline")
    seen: list[tuple[PipelineConfig, str | None]] = []

    def fake_run(config, run_dir, until=None):
        seen.append((config, run_dir))
        return {"stages": {}}

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(jobs_pipeline, "run_pipeline", fake_run)
    assert jobs_pipeline.main(argv[3:]) == 0
    (got,) = seen
    return got


def _config_path(argv: list[str]) -> str:
    return argv[argv.index("--config") + 1]


NodeTypes = dict[str, tuple[dict[str, int], int]]  # name -> (Ray resources, most nodes)


def _misfits(config: PipelineConfig, node_types: NodeTypes) -> list[str]:
    """Why ``config`` cannot run on workers of ``node_types`` (name -> (Ray resources, most
    nodes)): a stage whose per-task/actor request fits no node type, or a training run whose
    ``num_workers`` workers cannot all be placed at once. Empty when it fits."""
    problems = []
    for stage, res in config.ray.resources.items():
        if not any(r.get("CPU", 0) >= res.num_cpus and r.get("GPU", 0) >= res.num_gpus
                   for r, _ in node_types.values()):
            problems.append(f"{stage}: {res.num_cpus} CPU + {res.num_gpus} GPU fits no node")
    train = config.ray.for_stage("train")

    def per_node(r: dict[str, int]) -> int:
        fits = [r.get("CPU", 0) // train.num_cpus if train.num_cpus else math.inf,
                r.get("GPU", 0) // train.num_gpus if train.num_gpus else math.inf]
        return int(min(fits))

    slots = sum(per_node(r) * most for r, most in node_types.values())
    if slots < config.train.num_workers:
        problems.append(f"train: {config.train.num_workers} workers, {slots} places")
    return problems


def _launcher_workers(name: str) -> NodeTypes:
    types = _launcher(name)["available_node_types"]
    return {t: (s["resources"], s["max_workers"]) for t, s in types.items()
            if t != LAUNCHER_HEAD[name]}


def _kuberay_workers(doc: dict[str, Any]) -> NodeTypes:
    return {g["groupName"]: (_ray_resources(g), g["maxReplicas"])
            for g in _cluster_spec(doc)["workerGroupSpecs"]}


@pytest.mark.parametrize("name", sorted(LAUNCHER_NODE_TYPES))
def test_launcher_documents_submitting_configs_it_can_run(name: str, monkeypatch) -> None:
    text = (CLUSTER / name).read_text(encoding="utf-8")
    assert "ray job submit --address http://HEAD:8265 --working-dir ." in text
    assert "export RAY_AUTH_MODE=token" in text and "RAY_AUTH_TOKEN_PATH=" in text
    commands = _pipeline_commands(text)
    assert [_config_path(argv) for argv in commands] == LAUNCHER_CONFIGS
    for argv in commands:
        config, run_dir = _run_entry_point(argv, monkeypatch)
        assert run_dir == f"/runs/{config.name}"  # the shared volume
        assert _misfits(config, _launcher_workers(name)) == []


#: RayJob -> (config, run dir) its entrypoint runs.
RAYJOB_RUNS = {
    "kuberay/rayjob-quickstart.yaml": ("configs/quickstart.yaml", "/runs/quickstart"),
    "kuberay/rayjob-gsm8k-kpdd.yaml": ("configs/gsm8k_kpdd_pot.yaml", "/runs/gsm8k_kpdd_pot"),
}


@pytest.mark.parametrize("rel", sorted(RAYJOB_RUNS))
def test_rayjob_entrypoint_runs_a_config_its_cluster_can_hold(rel: str, monkeypatch) -> None:
    doc = _manifest(rel)
    argv = shlex.split(doc["spec"]["entrypoint"])
    config, run_dir = _run_entry_point(argv, monkeypatch)
    assert (_config_path(argv), run_dir) == RAYJOB_RUNS[rel]
    assert _misfits(config, _kuberay_workers(doc)) == []


def test_misfits_names_what_does_not_fit() -> None:
    """The fit check itself: a GPU stage on CPU-only workers, and training that needs more
    GPU nodes than the group may have."""
    config = load_config(REPO / "configs" / "gsm8k_kpdd_pot.yaml")
    assert _misfits(config, {"cpu": ({"CPU": 16}, 16)}) == [
        "generate: 4.0 CPU + 1.0 GPU fits no node",
        "train: 8.0 CPU + 1.0 GPU fits no node",
        "evaluate: 4.0 CPU + 1.0 GPU fits no node",
        "train: 4 workers, 0 places",
    ]
    assert _misfits(config, {"gpu": ({"CPU": 8, "GPU": 1}, 3)}) == ["train: 4 workers, 3 places"]


def _doc_files() -> list[Path]:
    return sorted(p for p in CLUSTER.rglob("*") if p.is_file())


def test_every_documented_pipeline_command_parses_and_names_a_shipped_config(monkeypatch) -> None:
    """Commands in cluster/README.md and in the comments of every cluster file."""
    seen = []
    for path in _doc_files():
        for argv in _pipeline_commands(path.read_text(encoding="utf-8")):
            _run_entry_point(argv, monkeypatch)
            assert (REPO / _config_path(argv)).is_file(), (path.name, argv)
            seen.append(path.relative_to(CLUSTER).as_posix())
    assert sorted(seen) == sorted([
        "README.md", "README.md", "aws.yaml", "aws.yaml", "gcp.yaml", "gcp.yaml",
        "kuberay/raycluster.yaml", "kuberay/rayjob-gsm8k-kpdd.yaml",
        "kuberay/rayjob-quickstart.yaml"])


def test_runtime_env_jsons_in_the_docs_match_ray_config() -> None:
    """`--runtime-env-json` in cluster files is JSON, has only runtime_env keys, and excludes
    what ray_config.yaml excludes (the one list of what a job upload leaves out)."""
    excludes = load_config(REPO / "ray_config.yaml", RayConfig).runtime_env["excludes"]
    found = 0
    for path in _doc_files():
        for raw in re.findall(r"--runtime-env-json '([^']*)'", path.read_text(encoding="utf-8")):
            env = json.loads(raw)
            assert _runtime_env_problems(env) == [], (path.name, raw)
            assert env["excludes"] == excludes, path.name
            found += 1
    assert found == 7  # aws.yaml and gcp.yaml 2 each, raycluster.yaml 1, README.md 2


# ------------------------------------------------------------------------------------------
# runtimeEnvYAML and serveConfigV2
# ------------------------------------------------------------------------------------------

def _runtime_env_problems(env: Any) -> list[str]:
    """Why ``env`` is not a runtime_env Ray would act on: not a mapping, a key Ray's
    runtime_env does not know (``RuntimeEnv`` accepts any key, taking it for a plugin's), or
    what ``RuntimeEnv(**env)`` refuses (e.g. a non-string env var)."""
    from ray.runtime_env import RuntimeEnv

    if not isinstance(env, dict):
        return [f"not a mapping: {env!r}"]
    known = {f for f in RuntimeEnv.known_fields if not f.startswith("_")}
    problems = [f"unknown runtime_env key {k!r}" for k in env if k not in known]
    try:
        RuntimeEnv(**env)
    except (TypeError, ValueError) as e:
        problems.append(str(e))
    return problems


@pytest.mark.parametrize("rel", sorted(RAYJOB_RUNS))
def test_rayjob_runtime_env_yaml(rel: str) -> None:
    env = yaml.safe_load(_manifest(rel)["spec"]["runtimeEnvYAML"])
    assert _runtime_env_problems(env) == []
    assert env == {"env_vars": {"MATHDISTILL_DATA_DIR": "/data", "MATHDISTILL_RUNS": "/runs",
                                "TOKENIZERS_PARALLELISM": "false"}}


def test_runtime_env_check_catches_what_ray_lets_through() -> None:
    from ray.runtime_env import RuntimeEnv

    RuntimeEnv(env_var={"A": "1"})  # a misspelled key: Ray takes it for a plugin's field
    assert _runtime_env_problems({"env_var": {"A": "1"}}) == ["unknown runtime_env key 'env_var'"]
    assert _runtime_env_problems({"env_vars": {"A": 1}}) == [
        "runtime_env['env_vars'] must be of type Dict[str, str], but the value 1 is of type "
        "<class 'int'>"]
    assert _runtime_env_problems(["env_vars"]) == ["not a mapping: ['env_vars']"]


def _serve_config() -> dict[str, Any]:
    return yaml.safe_load(_manifest("kuberay/rayservice.yaml")["spec"]["serveConfigV2"])


def test_serve_config_v2_passes_ray_serves_schema_and_the_strict_check() -> None:
    from ray.serve.schema import ServeDeploySchema

    from serve.schema_check import check_serve_config

    data = _serve_config()
    schema = ServeDeploySchema.model_validate(data)
    assert [a.name for a in schema.applications] == ["mathdistill"]
    assert schema.http_options.host == "0.0.0.0" and schema.http_options.port == 8000
    assert check_serve_config(data) == []  # unknown keys at every level, the builder's args


def test_serve_config_v2_import_path_resolves_to_the_builder() -> None:
    """Imported for real: serve.app imports neither Ray nor a model at module level."""
    import serve.app
    from serve.cli import APP_NAME

    (app,) = _serve_config()["applications"]
    module, attr = app["import_path"].split(":")
    assert getattr(importlib.import_module(module), attr) is serve.app.build_app
    assert app["name"] == APP_NAME and app["route_prefix"] == "/"


def test_rayservice_serves_what_the_rayjob_trains_on_the_workers_it_has() -> None:
    from serve.app import AppArgs

    (app,) = _serve_config()["applications"]
    args = AppArgs.model_validate(app["args"])
    _, run_dir = RAYJOB_RUNS["kuberay/rayjob-gsm8k-kpdd.yaml"]
    assert args.runs == [run_dir]
    assert args.serve.replicas == "auto" and args.serve.autoscaling.max_replicas == 8
    workers = _kuberay_workers(_manifest("kuberay/rayservice.yaml"))
    assert workers == {"cpu": ({"CPU": 8}, 8)}
    # every student replica fits on a worker, and the most replicas fit on the most workers
    per_worker = workers["cpu"][0]["CPU"] // args.serve.num_cpus
    assert per_worker * workers["cpu"][1] >= args.serve.autoscaling.max_replicas


def test_documented_requests_are_valid_api_requests() -> None:
    from serve.api import SolveRequest

    bodies = [raw for path in (CLUSTER / "README.md", CLUSTER / "kuberay" / "rayservice.yaml")
              for raw in re.findall(r"/v1/solve -H 'Content-Type: application/json' \\\n"
                                    r"[#\s]*-d '([^']*)'", path.read_text(encoding="utf-8"))]
    assert len(bodies) == 2
    for raw in bodies:
        SolveRequest.model_validate(json.loads(raw))


# ------------------------------------------------------------------------------------------
# Images and references
# ------------------------------------------------------------------------------------------

def test_images_are_ray_260_with_bubblewrap_and_the_right_extra() -> None:
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert f'"ray[data,train,serve]=={RAY_VERSION}"' in pyproject
    assert f'gpu = ["ray[llm]=={RAY_VERSION}"]' in pyproject
    cpu = (CLUSTER / "Dockerfile").read_text(encoding="utf-8")
    gpu = (CLUSTER / "Dockerfile.gpu").read_text(encoding="utf-8")
    assert f"FROM rayproject/ray:{RAY_VERSION}-py311-cpu\n" in cpu
    assert f"FROM rayproject/ray:{RAY_VERSION}-py311-gpu\n" in gpu
    for text in (cpu, gpu):
        assert "apt-get install -y --no-install-recommends bubblewrap" in text
        assert "RUN mkdir -p /home/ray/.ray" in text  # the launcher mounts the token in it
    assert "pip install --no-cache-dir -e .\n" in cpu
    assert "pip install --no-cache-dir -e '.[gpu]'\n" in gpu
    assert not re.search(r"pip install[^\n]*torch", gpu)  # vLLM's CUDA torch, not a pin


def test_cluster_files_name_only_paths_that_exist() -> None:
    """Paths a cluster file or the README names (cluster/..., configs/...) exist, none points
    outside the repository, and the RayJob's old path is gone."""
    for path in _doc_files():
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text and "/work/" not in text, path.name
        assert "kuberay-rayjob.yaml" not in text, path.name
        for ref in re.findall(r"\b((?:cluster|configs)/[\w./-]*\w)", text):
            assert (REPO / ref).exists(), (path.name, ref)
