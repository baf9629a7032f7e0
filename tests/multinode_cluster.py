"""A Ray cluster of several nodes on this machine, in a process of its own, for the node-failure
tests: a head that runs no work (``CPU: 0``) and worker nodes of one CPU each, made with Ray's
own ``ray.cluster_utils.Cluster`` (each node its own raylet, object store and workers). The test
process drives it over stdin/stdout, one JSON object per line:

    {"kill": RAYLET_PID}  -> SIGKILL that worker node's raylet and every process of the node
    {"add": true}         -> a new worker node (what an autoscaler does for a lost one)
    {"quit": true}        -> the whole cluster down

Each answer, and the first line (``{"address": ..., "workers": [...]}``), lists the worker
nodes as ``{"node_id", "raylet_pid"}``. :class:`MultiNodeCluster` is the test side. The cluster
keeps its sessions and its address file in a temporary folder of its own (``RAY_TMPDIR``): it
never touches another Ray's ``/tmp/ray`` (a developer's own cluster, the suite's session Ray).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

WORKER_CPUS = 1


def _serve(n_workers: int) -> None:
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    # a lost node is declared dead within about two seconds (default: about fifteen)
    system = {"health_check_period_ms": 500, "health_check_timeout_ms": 500,
              "health_check_failure_threshold": 4}
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "_system_config": system})
    nodes = [cluster.add_node(num_cpus=WORKER_CPUS) for _ in range(n_workers)]

    def raylet_pid(node: Any) -> int:
        return node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid

    def workers() -> list[dict[str, Any]]:
        return [{"node_id": n.node_id, "raylet_pid": raylet_pid(n)} for n in nodes]

    def say(obj: dict[str, Any]) -> None:
        print(json.dumps(obj), flush=True)

    say({"address": cluster.address, "workers": workers()})
    try:
        for line in sys.stdin:
            cmd = json.loads(line)
            if "kill" in cmd:
                node = next(n for n in nodes if raylet_pid(n) == cmd["kill"])
                cluster.remove_node(node, allow_graceful=False)  # SIGKILL, no clean-up
                nodes.remove(node)
                say({"killed": cmd["kill"], "workers": workers()})
            elif "add" in cmd:
                nodes.append(cluster.add_node(num_cpus=WORKER_CPUS))
                say({"added": nodes[-1].node_id, "workers": workers()})
            elif "quit" in cmd:
                break
    finally:
        cluster.shutdown()


class MultiNodeCluster:
    """The test side: starts the cluster process, sends it commands, stops it on exit."""

    def __init__(self, workers: int = 2) -> None:
        self.n_workers = workers
        self.address = ""
        self.workers: list[dict[str, Any]] = []
        self._proc: subprocess.Popen | None = None

    def _answer(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the cluster process ended (status {self._proc.poll()})")
        answer = json.loads(line)
        self.workers = answer["workers"]
        return answer

    def _send(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(cmd) + "\n")
        self._proc.stdin.flush()
        return self._answer()

    def kill(self, raylet_pid: int) -> None:
        self._send({"kill": raylet_pid})

    def add(self) -> None:
        self._send({"add": True})

    def raylet_running(self, process_name: str) -> int | None:
        """The raylet pid of the worker node running a process whose title contains
        ``process_name`` (Ray names its workers ``ray::<actor class>...``), or None."""
        import psutil

        for w in self.workers:
            try:
                children = psutil.Process(w["raylet_pid"]).children(recursive=True)
            except psutil.Error:
                continue
            for child in children:
                try:
                    if any(process_name in part for part in child.cmdline()):
                        return w["raylet_pid"]
                except psutil.Error:
                    continue
        return None

    def __enter__(self) -> "MultiNodeCluster":
        self.tmp = tempfile.mkdtemp(prefix="mdc", dir="/tmp")  # short: Ray's socket paths
        self._proc = subprocess.Popen(
            [sys.executable, __file__, str(self.n_workers)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "RAY_ADDRESS": "", "RAY_TMPDIR": self.tmp})
        self.address = self._answer()["address"]
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                self._proc.stdin.write(json.dumps({"quit": True}) + "\n")  # type: ignore[union-attr]
                self._proc.stdin.flush()  # type: ignore[union-attr]
                self._proc.wait(60)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
