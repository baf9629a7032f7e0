"""Ray autoscaling for mathdistill on one machine, shown with Ray's fake multi-node provider.

    HOME=/tmp/as_home .venv/bin/python bench/autoscaling.py --out /tmp/autoscaling --part both

Starts a Ray head with ``CPU: 0`` and the autoscaler of ``ray.autoscaler._private.
fake_multi_node`` (worker nodes are extra raylets on this machine, launched and terminated by
the real autoscaler), then, sampling the cluster once a second (alive worker nodes from
``ray.nodes()``, CPUs in use from ``ray.cluster_resources()`` / ``ray.available_resources()``,
CPUs the scheduler is waiting for from the autoscaler's cluster status, Serve replicas
RUNNING from ``serve.status()``):

1. ``pipeline``: the real pipeline (``distill.pipeline.run_pipeline``) on the small quickstart
   of tests/test_pipeline.py (120 training problems, 30 test, 1 epoch): data (a 1-CPU
   task) -> search (3 actors of 1 CPU) -> sft -> train (Ray Train, 1 worker of 1 CPU) ->
   evaluate (up to 2 actors of 1 CPU; the 30 problems are one batch, so one actor). With no
   CPU on the head every task needs a worker node: nodes come up for the work and go away
   after ``idle_timeout_minutes``. Writes ``pipeline_record.csv`` (and the run's log lines,
   ``pipeline_log.txt``; the run itself goes to a new /tmp/autoscaling-run-* folder).
2. ``serve``: a Ray Serve deployment whose requests sleep 0.5 s (not the product's
   serve/app.py, which needs a trained run; a fixed 0.5 s request makes the load, and so the
   replica count, predictable), autoscaling 1..4 replicas of 0.5 CPU, under 20 concurrent
   HTTP clients for 20 s, then nothing. Writes ``serve_record.csv``.

``summary.json`` holds what the records show (most worker nodes, time to the first one, time
back to none; most replicas, time back to the minimum; the pipeline's stage counts).

Why not ``ray.cluster_utils.AutoscalingCluster`` itself: in Ray 2.60 its ``start()`` and
``shutdown()`` run ``ray stop --force``, which kills every Ray process on the machine (any
other cluster too), and the wheel lacks the ``fake_multi_node/example.yaml`` its constructor
reads. :class:`FakeCluster` does what its ``start()`` does (the same config, plus the
provider's ``gcs_address`` and ``launch_multiple``; the same environment) on ports and a temp
dir of its own, and stops only the processes it started (by pid). Autoscaler v1 (Ray's
default here).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ the cluster
class FakeCluster:
    """A head (``CPU: 0``) plus the fake multi-node autoscaler: the cluster config of
    ``AutoscalingCluster`` (provider ``fake_multinode``) with one worker type ``cpu_worker``."""

    def __init__(self, worker_cpus: float, max_workers: int, idle_timeout_minutes: float,
                 env: dict[str, str] | None = None):
        self.worker_cpus, self.max_workers = worker_cpus, max_workers
        self.idle_timeout_minutes, self.env = idle_timeout_minutes, env or {}
        self.tmp = Path(tempfile.mkdtemp(prefix="asr", dir="/tmp"))  # short: socket paths
        self.address: str | None = None

    def start(self) -> str:
        import ray._private.services

        ip = ray._private.services.get_node_ip_address()
        port = free_port()
        self.address = f"{ip}:{port}"
        config = {
            "cluster_name": "fake_multinode", "max_workers": self.max_workers,
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True,
                         "disable_node_updaters": True, "disable_launch_config_check": True,
                         "gcs_address": self.address, "launch_multiple": True},
            "available_node_types": {
                "ray.head.default": {"resources": {"CPU": 0}, "node_config": {},
                                     "max_workers": 0},
                "cpu_worker": {"resources": {"CPU": self.worker_cpus,
                                             "object_store_memory": 500 * 1024**2},
                               "node_config": {}, "min_workers": 0,
                               "max_workers": self.max_workers}},
            "head_node_type": "ray.head.default", "auth": {}, "upscaling_speed": 1.0,
            "idle_timeout_minutes": self.idle_timeout_minutes, "docker": {},
            "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
            "worker_setup_commands": [], "head_start_ray_commands": [],
            "worker_start_ray_commands": [], "file_mounts": {}, "cluster_synced_files": [],
            "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": []}
        config_path = self.tmp / "autoscaling.json"
        config_path.write_text(json.dumps(config))
        ray_bin = str(Path(sys.executable).parent / "ray")
        cmd = [ray_bin, "start", "--head", f"--port={port}", f"--temp-dir={self.tmp}",
               f"--autoscaling-config={config_path}", "--num-cpus=0",
               f"--object-store-memory={500 * 1024**2}", "--disable-usage-stats",
               f"--dashboard-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
               f"--dashboard-agent-grpc-port={free_port()}",
               f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
               f"--ray-client-server-port={free_port()}"]
        env = {**os.environ, "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_FAKE_CLUSTER": "1",
               **self.env}
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        return self.address

    def _processes(self) -> dict[int, Any]:
        """Every process of this cluster: those naming its temp dir or GCS address, and
        their descendants (workers rename themselves ray::...)."""
        import psutil

        found: dict[int, Any] = {}
        markers = [str(self.tmp)] + ([self.address] if self.address else [])
        for p in psutil.process_iter(["cmdline"]):
            try:
                args = p.info["cmdline"] or []
                if any(m in a and (m != self.address or a.endswith(m)) for m in markers
                       for a in args):
                    found[p.pid] = p
                    found.update((c.pid, c) for c in p.children(recursive=True))
            except psutil.Error:
                pass
        found.pop(os.getpid(), None)
        return found

    def shutdown(self) -> int:
        """Terminate this cluster's processes (by pid; nothing else), then remove its temp
        dir. Returns how many processes it ended."""
        import psutil

        procs = list(self._processes().values())
        for p in procs:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return len(procs)


# ------------------------------------------------------------------------------ sampling
def cluster_sample(address: str) -> dict[str, Any]:
    import ray

    workers = sum(1 for n in ray.nodes()
                  if n["Alive"] and "node:__internal_head__" not in n.get("Resources", {}))
    total = ray.cluster_resources().get("CPU", 0.0)
    used = total - ray.available_resources().get("CPU", 0.0)
    return {"workers": workers, "cpu_total": total, "cpu_used": round(used, 2),
            "cpu_pending": pending_cpus(address)}


def pending_cpus(address: str) -> float | None:
    """CPUs in resource requests not yet placed (tasks, actors, placement groups), as the GCS
    reports them to the autoscaler."""
    try:
        from ray.autoscaler.v2.sdk import get_cluster_status

        demands = get_cluster_status(address).resource_demands
        total = 0.0
        for d in demands.ray_task_actor_demand + demands.placement_group_demand:
            total += sum(b.bundle.get("CPU", 0.0) * b.count for b in d.bundles_by_count)
        return total
    except Exception:  # noqa: BLE001 - a record without this column is still a record
        return None


class Sampler(threading.Thread):
    """One row a second: t (s since start), the cluster sample, ``extra()`` and ``phase``."""

    def __init__(self, address: str, extra: Callable[[], dict[str, Any]] | None = None):
        super().__init__(daemon=True)
        self.address, self.extra = address, extra
        self.rows: list[dict[str, Any]] = []
        self.phase = "idle"
        self.t0 = time.time()
        self._stop_event = threading.Event()

    def now(self) -> float:
        return round(time.time() - self.t0, 1)

    def run(self) -> None:
        tick = self.t0
        while not self._stop_event.is_set():
            row: dict[str, Any] = {"t": self.now(), "wall": round(time.time(), 1),
                                   "phase": self.phase}
            try:
                row.update(cluster_sample(self.address))
                if self.extra:
                    row.update(self.extra())
            except Exception as e:  # noqa: BLE001 - keep sampling; the row says what failed
                row["error"] = repr(e)[:200]
            self.rows.append(row)
            tick += 1.0
            self._stop_event.wait(max(0.0, tick - time.time()))

    def last(self, key: str) -> Any:
        return next((r[key] for r in reversed(self.rows) if key in r), None)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    def wait_until(self, ok: Callable[[], bool], timeout: float, hold: float = 0.0) -> bool:
        """Until ``ok()`` has held for ``hold`` s (checked each second), or ``timeout``."""
        end, since = time.time() + timeout, None
        while time.time() < end:
            if ok():
                since = since or time.time()
                if time.time() - since >= hold:
                    return True
            else:
                since = None
            time.sleep(1.0)
        return False

    def write(self, path: Path) -> None:
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)


def first_t(rows: list[dict], after: float, ok: Callable[[dict], bool],
            stays: bool = False) -> float | None:
    """Seconds from ``after`` to the first row (at or after it) where ``ok`` holds (and, with
    ``stays``, holds in every later row)."""
    rows = [r for r in rows if r["t"] >= after and "workers" in r]
    for i, r in enumerate(rows):
        if ok(r) and (not stays or all(ok(x) for x in rows[i:])):
            return round(r["t"] - after, 1)
    return None


# ------------------------------------------------------------------------------ part 1
def pipeline_part(address: str, out: Path, until: str | None, timeout: float,
                  drain_timeout: float) -> dict[str, Any]:
    from distill.config import RayConfig, StageResources, load_config
    from distill.pipeline import run_pipeline

    cfg = load_config(REPO / "configs" / "quickstart.yaml")  # small_quickstart, 1 epoch
    data = cfg.data.model_copy(update={"synthetic": cfg.data.synthetic.model_copy(
        update={"n_train": 120, "n_valid": 20, "n_test": 30, "langs": ["en"], "max_steps": 2})})
    train = cfg.train.model_copy(update={"epochs": 1, "num_workers": 1, "batch_size": 16,
                                         "log_every_steps": 5})
    ray_cfg = RayConfig(address=address, runtime_env=cfg.ray.runtime_env, resources={
        "search": StageResources(num_cpus=1, concurrency=3),
        "evaluate": StageResources(num_cpus=1, concurrency=2),
        "train": StageResources(num_cpus=1)})
    cfg = cfg.model_copy(update={"data": data, "train": train, "ray": ray_cfg,
                                 "search": cfg.search.model_copy(update={"max_ops": 3})})
    run_dir = Path(tempfile.mkdtemp(prefix="autoscaling-run-", dir="/tmp"))
    # Ray Data's usage poller (a driver thread started by the search stage) queries a
    # Prometheus server nobody runs here, every 10 s, and debug-logs each failure with its
    # traceback (ray.data._internal.usage.util). Formatting a traceback calls ast.parse, and
    # CPython 3.11.7 shares the AST constructor's recursion-depth counter between threads:
    # a parse at the same moment in the pipeline (distill.provenance, a stage's key) then
    # fails with "SystemError: AST constructor recursion depth mismatch" (seen here once,
    # before the evaluate stage). distill.provenance now parses again when that happens;
    # not creating those debug records also removes the parses (as measured on 2026-12-04).
    logging.getLogger("ray.data._internal.usage").setLevel(logging.INFO)
    ray_cfg.init_ray()  # what run_pipeline does first; here so the sampler can start before it

    def stage() -> dict[str, Any]:  # the running stage, from the run's manifest
        try:
            stages = json.loads((run_dir / "manifest.json").read_text()).get("stages", {})
        except (OSError, ValueError):
            return {"stage": ""}
        return {"stage": next((n for n, s in stages.items() if s.get("status") == "running"),
                              "")}

    sampler = Sampler(address, stage)
    sampler.start()
    logs: list[str] = []
    result: dict[str, Any] = {"run_dir": str(run_dir), "until": until}
    try:
        time.sleep(5)  # a baseline: no worker nodes
        sampler.phase = "pipeline"
        t_start = sampler.now()
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["manifest"] = run_pipeline(
                    cfg, run_dir, log=lambda m: (logs.append(f"{sampler.now():7.1f} {m}"),
                                                 print(f"[{sampler.now():6.1f}s] {m}", flush=True)),
                    until=until)
            except BaseException as e:  # noqa: BLE001 - reported in the summary
                box["error"] = f"{type(e).__name__}: {e}"

        worker = threading.Thread(target=run, daemon=True, name="pipeline")
        worker.start()
        worker.join(timeout)
        t_end = sampler.now()
        sampler.phase = "after"
        if worker.is_alive():
            box["error"] = (f"timed out after {timeout:.0f} s in stage "
                            f"{stage()['stage'] or '?'}")
        drained = sampler.wait_until(lambda: sampler.last("workers") == 0, drain_timeout,
                                     hold=3)
        rows = sampler.rows
        manifest = box.get("manifest") or _read_json(run_dir / "manifest.json")
        result.update({
            "error": box.get("error"),
            "t_pipeline_start": t_start, "t_pipeline_end": t_end,
            "pipeline_s": round(t_end - t_start, 1),
            "max_workers": max((r.get("workers", 0) for r in rows), default=0),
            "max_workers_per_stage": _max_per(rows, "stage"),
            "time_to_first_worker_s": first_t(rows, t_start, lambda r: r["workers"] >= 1),
            "time_back_to_zero_s": first_t(rows, t_end, lambda r: r["workers"] == 0,
                                           stays=True) if drained else None,
            "stages": {n: {k: s.get(k) for k in ("status", "seconds", "counts")}
                       for n, s in (manifest or {}).get("stages", {}).items()},
        })
    finally:
        sampler.stop()
        sampler.write(out / "pipeline_record.csv")
        (out / "pipeline_log.txt").write_text("\n".join(logs) + "\n")
    return result


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _max_per(rows: list[dict], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        if r.get(key) and "workers" in r:
            out[r[key]] = max(out.get(r[key], 0), r["workers"])
    return out


# ------------------------------------------------------------------------------ part 2
AUTOSCALING = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 1,
               "upscale_delay_s": 1, "downscale_delay_s": 5, "look_back_period_s": 3}


def serve_part(address: str, out: Path, clients: int, burst_s: float,
               drain_timeout: float) -> dict[str, Any]:
    import ray
    from ray import serve
    from ray.serve.config import AutoscalingConfig

    # look_back_period_s is checked against the deprecated metrics_interval_s (10 s); the
    # intervals that count are the RAY_SERVE_*_METRIC_PUSH_INTERVAL_S of main() (1 s)
    warnings.filterwarnings("ignore", message=".*look_back_period_s.*", category=FutureWarning)
    AutoscalingConfig(**AUTOSCALING)  # the field names are Ray 2.60's: fail early if not

    @serve.deployment(autoscaling_config=AUTOSCALING, ray_actor_options={"num_cpus": 0.5},
                      max_ongoing_requests=4)
    class Sleeper:
        async def __call__(self, request) -> str:
            import asyncio

            await asyncio.sleep(0.5)
            return "ok"

    ray.init(address=address, namespace="autoscaling", log_to_driver=False,
             ignore_reinit_error=True)
    port = free_port()

    def replicas() -> dict[str, Any]:
        try:
            app = serve.status().applications.get("sleeper")
            states = app.deployments["Sleeper"].replica_states if app else {}
        except Exception:  # noqa: BLE001 - not deployed yet / controller starting
            return {"replicas": None}
        return {"replicas": sum(n for s, n in states.items()
                                if getattr(s, "value", s) == "RUNNING"),
                "replicas_all": sum(states.values())}

    sampler = Sampler(address, replicas)
    sampler.start()
    result: dict[str, Any] = {"app": "Sleeper: asyncio.sleep(0.5) per request, 0.5 CPU a "
                                     "replica", "autoscaling_config": AUTOSCALING,
                              "clients": clients, "burst_s": burst_s}
    try:
        sampler.phase = "deploy"
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        t_deploy = sampler.now()
        serve.run(Sleeper.bind(), name="sleeper", route_prefix="/sleep")
        result["deploy_s"] = round(sampler.now() - t_deploy, 1)
        sampler.phase = "steady"
        time.sleep(10)
        sampler.phase = "burst"
        t_burst = sampler.now()
        stats = burst(f"http://127.0.0.1:{port}/sleep", clients, burst_s)
        t_end = sampler.now()
        sampler.phase = "after"
        back = sampler.wait_until(lambda: sampler.last("replicas") == 1, drain_timeout, hold=3)
        # the node(s) the extra replicas brought up go away after the idle timeout
        sampler.wait_until(lambda: sampler.last("workers") <= 1, drain_timeout, hold=3)
        rows = [r for r in sampler.rows if "workers" in r]
        reps = [r["replicas"] for r in rows if r.get("replicas") is not None]
        result.update({
            **stats,
            "t_burst_start": t_burst, "t_burst_end": t_end,
            "max_replicas": max(reps, default=None),
            "time_to_max_replicas_s": first_t(
                rows, t_burst, lambda r: r.get("replicas") == max(reps, default=-1)),
            "time_back_to_min_s": first_t(rows, t_end, lambda r: r.get("replicas") == 1,
                                          stays=True) if back else None,
            "max_workers": max((r["workers"] for r in rows), default=0),
            "workers_at_end": rows[-1]["workers"] if rows else None,
            "time_workers_back_to_1_s": first_t(rows, t_end, lambda r: r["workers"] <= 1,
                                                stays=True),
        })
    finally:
        sampler.stop()
        sampler.write(out / "serve_record.csv")
        try:
            serve.shutdown()
        except Exception as e:  # noqa: BLE001
            print(f"serve.shutdown: {e!r}", file=sys.stderr)
    return result


def burst(url: str, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads, each sending one request after the other for ``seconds``."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    end = time.time() + seconds

    def client() -> None:
        while time.time() < end:
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(url, timeout=60) as r:
                    r.read()
                with lock:
                    latencies.append(time.perf_counter() - t)
            except Exception as e:  # noqa: BLE001 - counted
                with lock:
                    failures.append(repr(e)[:100])

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    latencies.sort()

    def pct(q: float) -> float | None:
        return round(latencies[int(q * (len(latencies) - 1))], 3) if latencies else None

    return {"requests_ok": len(latencies), "requests_failed": len(failures),
            "first_failures": failures[:3], "latency_p50_s": pct(0.5),
            "latency_p95_s": pct(0.95), "latency_max_s": pct(1.0)}


# ------------------------------------------------------------------------------ main
def timeline(path: Path, keys: list[str], every: float = 5.0) -> list[str]:
    """The record every ``every`` s, as text lines."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    lines, next_t = [" ".join(f"{k:>11}" for k in keys)], 0.0
    for r in rows:
        if float(r["t"]) >= next_t:
            lines.append(" ".join(f"{str(r.get(k, '')):>11}" for k in keys))
            next_t = float(r["t"]) + every
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/autoscaling"))
    ap.add_argument("--part", choices=["pipeline", "serve", "both"], default="both")
    ap.add_argument("--worker-cpus", type=float, default=1)
    ap.add_argument("--max-workers", type=int, default=3)
    ap.add_argument("--idle-timeout-minutes", type=float, default=0.2)
    ap.add_argument("--until", default=None, help="last pipeline stage (default: all)")
    ap.add_argument("--pipeline-timeout", type=float, default=1200)
    ap.add_argument("--drain-timeout", type=float, default=180)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--burst-s", type=float, default=20)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    # Serve's autoscaling metrics every second instead of every ten (the replicas and proxy
    # inherit the head's environment); tokenizers quiet in Ray workers
    cluster = FakeCluster(args.worker_cpus, args.max_workers, args.idle_timeout_minutes, env={
        "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
        "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
        "TOKENIZERS_PARALLELISM": "false"})
    summary: dict[str, Any] = {"cluster": {
        "head": {"CPU": 0}, "worker_type": "cpu_worker", "worker_cpus": args.worker_cpus,
        "min_workers": 0, "max_workers": args.max_workers,
        "idle_timeout_minutes": args.idle_timeout_minutes, "provider": "fake_multinode",
        "autoscaler": "v1 (StandardAutoscaler)"}}
    t0 = time.time()
    import ray

    try:
        address = cluster.start()
        summary["cluster"]["address"] = address
        print(f"cluster up at {address} (temp dir {cluster.tmp})", flush=True)
        if args.part in ("pipeline", "both"):
            summary["pipeline"] = pipeline_part(address, args.out, args.until,
                                                args.pipeline_timeout, args.drain_timeout)
        if args.part in ("serve", "both"):
            summary["serve"] = serve_part(address, args.out, args.clients, args.burst_s,
                                          args.drain_timeout)
    finally:
        ray.shutdown()
        ended = cluster.shutdown()
        summary["wall_s"] = round(time.time() - t0, 1)
        summary["processes_ended_at_shutdown"] = ended
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))

    print(json.dumps(summary, indent=2, default=str))
    for name, keys in (("pipeline_record.csv", ["t", "phase", "stage", "workers", "cpu_used",
                                                "cpu_pending"]),
                       ("serve_record.csv", ["t", "phase", "workers", "cpu_used",
                                             "cpu_pending", "replicas"])):
        if (args.out / name).is_file():
            print(f"\n{name} (every 5 s)")
            print("\n".join(timeline(args.out / name, keys)))
    return 0 if not any((summary.get(p) or {}).get("error") for p in ("pipeline", "serve")) else 1


if __name__ == "__main__":
    sys.exit(main())
