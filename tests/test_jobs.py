"""`ray job submit` for real: a Ray head on loopback (its own temp dir and ports), the
quickstart (shrunk) submitted through the job API with the runtime environment of
ray_config.yaml, run to the end by jobs/pipeline.py on that cluster."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from distill.config import RayConfig, dump_config

from test_pipeline import small_quickstart

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.ray


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_tree_of(marker: str) -> None:
    """Kill every process whose command line mentions ``marker`` (the head's temp dir)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture()
def ray_head():
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        pytest.skip("the ray command is not installed beside this Python")
    tmp = tempfile.mkdtemp(prefix="rjob", dir="/tmp")  # short: Ray's socket paths live here
    dash = _free_port()
    # Token authentication as a user sets it up for a cluster (README, "Running on a cluster"):
    # the head and every client read the same token, here from a file of this test's own, so
    # neither a fresh machine (no ~/.ray/auth_token) nor a used one (someone else's token)
    # changes the outcome.
    token_file = Path(tmp) / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file))
    for inherited in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):
        env.pop(inherited, None)
    # Every fixed port on its own free one: another Ray on this machine (the tests' own local
    # cluster) holds the defaults, and a head whose job agent cannot bind refuses every job.
    ports = [f"--{name}={_free_port()}" for name in (
        "port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
        "runtime-env-agent-port", "ray-client-server-port", "node-manager-port",
        "object-manager-port")]
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--num-cpus=2", *ports, "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dash}", "--include-dashboard=true", f"--temp-dir={tmp}/ray",
         "--disable-usage-stats", "--block"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{dash}", tmp, env
    finally:
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        head.wait(30)
        _kill_tree_of(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def test_quickstart_runs_as_a_ray_job(ray_head) -> None:
    address, tmp, env = ray_head
    cfg = small_quickstart(epochs=1)
    config_file = Path(tmp) / "quickstart-small.yaml"
    dump_config(cfg, config_file)
    raw = yaml.safe_load(config_file.read_text())
    raw["ray"] = {"address": None, "num_cpus": None}  # under a job: join the job's cluster
    config_file.write_text(yaml.safe_dump(raw))
    shipped = RayConfig.model_validate(yaml.safe_load((REPO / "ray_config.yaml").read_text()))
    run_dir = Path(tmp) / "run"
    ray_bin = str(Path(sys.executable).with_name("ray"))
    # the README's command; the CLI waits for the dashboard, submits, and tails the job's logs
    cmd = [ray_bin, "job", "submit", "--address", address, "--working-dir", str(REPO),
           "--runtime-env-json", json.dumps(shipped.runtime_env), "--",
           sys.executable, "-m", "jobs.pipeline", "--config", str(config_file),
           "--run-dir", str(run_dir)]
    deadline = time.monotonic() + 300
    while True:  # the head's dashboard and job agent take a while to come up
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if (done.returncode == 0 or time.monotonic() > deadline or run_dir.exists()
                or "AuthenticationError" in done.stderr):  # waiting does not fix a refused token
            break
        time.sleep(2.0)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "succeeded" in out.lower()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [s["status"] for s in manifest["stages"].values()] == ["complete"] * 5
    assert json.loads((run_dir / "evaluate" / "report.json").read_text())["n"] == 30
    assert '"evaluate": "complete"' in out  # jobs/pipeline.py's last line, from the job's logs


def _project_files() -> list[str]:
    """Every file of the packages, the configs and the project files (caches aside)."""
    files = [f"{top}/{p.relative_to(REPO / top).as_posix()}"
             for top in ("distill", "serve", "jobs", "configs")
             for p in (REPO / top).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return files + ["pyproject.toml", "ray_config.yaml"]


def test_submitted_working_dir_carries_every_file_the_job_needs(tmp_path: Path) -> None:
    """`ray job submit --working-dir REPO --runtime-env-json <ray_config.yaml's runtime_env>`
    packs the directory with Ray's own functions: the shipped excludes, Ray's default ones and
    .gitignore. Every file of the packages, the configs and the project files must be in
    that package, or a job on a real cluster (no editable install) cannot import them."""
    from zipfile import ZipFile

    from ray._private.runtime_env.packaging import create_package
    from ray._private.runtime_env.working_dir import upload_working_dir_if_needed

    shipped = RayConfig.model_validate(yaml.safe_load((REPO / "ray_config.yaml").read_text()))
    packed: list[str] = []

    def pack(working_dir: str, excludes: list[str] | None, is_file: bool = False) -> None:
        target = tmp_path / "working_dir.zip"
        create_package(working_dir, target, include_gitignore=True, excludes=excludes)
        packed.extend(ZipFile(target).namelist())

    upload_working_dir_if_needed({**shipped.runtime_env, "working_dir": str(REPO)},
                                 include_gitignore=True, upload_fn=pack)
    needed = _project_files()
    assert any(f.startswith("distill/data/") for f in needed)
    missing = sorted(set(needed) - set(packed))
    assert not missing, f"left out of the job's working dir: {missing}"
    assert not any(name.startswith((".venv/", ".git/", "runs/")) for name in packed)
