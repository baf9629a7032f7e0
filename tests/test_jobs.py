"""`ray job submit` for real: a Ray head on loopback (its own temp dir and ports), the
quickstart (shrunk) submitted through the job API with the runtime environment of
ray_config.yaml, run to the end by jobs/pipeline.py on that cluster."""

from __future__ import annotations

import json
import os
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
    env = dict(os.environ, RAY_AUTH_MODE="token")
    env.pop("RAY_ADDRESS", None)
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
        if done.returncode == 0 or time.monotonic() > deadline or run_dir.exists():
            break
        time.sleep(2.0)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "succeeded" in out.lower()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [s["status"] for s in manifest["stages"].values()] == ["complete"] * 5
    assert json.loads((run_dir / "evaluate" / "report.json").read_text())["n"] == 30
    assert '"evaluate": "complete"' in out  # jobs/pipeline.py's last line, from the job's logs
