"""Benchmark: the Ray Serve HTTP endpoint (``mathdistill serve``) against offline batched inference.

On one trained student (default: the quickstart run, an ``equation_prefix`` tiny T5) and its
held-out problems (the run's ``data/eval/*`` Parquet folder, 200 problems for the quickstart),
in one run:

1. Offline: the evaluation stage's own generation, ``distill.evaluate.infer.generate`` over the
   held-out ``masked_question`` s with the run's ``evaluate.inference`` settings (batch 64,
   greedy; equation students under their grammar, as evaluated and served). The model is
   loaded (and the problems decoded once) before timing; torch uses
   ``--threads`` threads (default 1: the Serve replica gets ``num_cpus: 1`` and Ray sets
   ``OMP_NUM_THREADS=1`` in it). Reported as problems/s (decoding only: offline, the answer is
   read from the output by ``prediction_rows`` afterwards, cheap for equation targets).
2. HTTP ``POST /v1/solve``, one question per request, against ``mathdistill serve RUN --config
   FILE`` with batching on (``max_batch_size`` 32) at 1, 8 and 32 concurrent clients. Each client
   is a thread with its own keep-alive connection sending requests back to back; the held-out
   questions are cycled (``--requests-single`` at 1 client, ``--requests`` at the others).
   Reported: requests/s, client-side p50 / p99 latency, errors (a non-200 or a transport error).
3. The same at ``--off-clients`` (32) clients with batching off (``max_batch_size: 1``): the
   first server is stopped and a second one started with that config (never two at once).
4. Agreement: every HTTP answer against the evaluation stage's ``predictions.jsonl``
   ``predicted`` for the same problem id (canonical strings; None == None agrees). The figure
   the target is checked on counts every response of every level of both servers; the first
   pass (1 client, each question once) is printed too.

Where the time goes, per level: the batches the replica actually formed (its own
``mathdistill_batch_size`` histogram, scraped from the server's Ray metrics export port once the
export has settled: count, mean size = requests / batches, sizes by bucket) and the CPU time per
request of each of the server's processes (student replica, gateway replica, HTTP proxy, Ray's
daemons; from /proc, net of their idle rate measured over ``--idle-s`` seconds after warm-up)
and of the client threads.

Each server is warmed up (``--warmup`` requests, 8 at a time) before it is timed. Servers run in a
session of their own; each is stopped with SIGINT and waited for (SIGKILL of its session after
``--stop-timeout``), also on errors or Ctrl-C, and the processes of that session still alive
afterwards (Ray's) are reported (and killed). Ports: ``--port`` and ``--port + 1``.

Targets (printed with pass/fail): HTTP requests/s at 32 clients >= 0.6 x offline problems/s;
batching on >= 3 x batching off at 32 clients; 0 errors; agreement >= 99%.

    .venv/bin/python bench/serve.py [--run runs/quickstart] [--requests 400]
        [--requests-single 200] [--levels 1,8,32] [--batch-wait 0.01] [--threads 1]

Prints the table and a final JSON line. One run with the defaults takes about 5.5 minutes on
the 2-core VM (two server start-ups of 20-35 s, warm-ups, idle windows and metric settling
included; about 4 minutes with ``--metrics-quiet 0 --idle-s 0``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# ------------------------------------------------------------------------------ the problems
def held_out(run: Path) -> list[dict]:
    """The run's held-out problems (every Parquet folder under data/eval), in file order."""
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for folder in sorted(p for p in (run / "data" / "eval").iterdir() if p.is_dir()):
        cols = ["id", "question", "masked_question", "quantities", "answer", "lang"]
        rows.extend(pq.read_table(folder, columns=cols).to_pylist())
    return rows


def reference_answers(run: Path) -> dict[str, str | None]:
    """id -> the evaluation stage's ``predicted`` (sample 0)."""
    out: dict[str, str | None] = {}
    with open(run / "evaluate" / "predictions.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("sample_idx", 0) == 0:
                out[row["id"]] = row["predicted"]
    return out


# ------------------------------------------------------------------------------ offline
def offline(run: Path, problems: list[dict], threads: int, repeats: int) -> dict:
    import torch

    from distill.evaluate.infer import generate, grammars_for, load_for_inference
    from serve.solver import resolve_student

    torch.set_num_threads(threads)
    spec = resolve_student(run)
    cfg = spec.inference_config()  # the run's evaluate.inference (num_samples 1: greedy)
    student = load_for_inference(spec.checkpoint, cfg)
    sources = [p["masked_question"] for p in problems]
    # equation students decode under their grammar, as the evaluation and the server do
    grammars = grammars_for(spec.target, problems, cfg)
    generate(student, sources, cfg, grammars)  # warm-up (and the grammar's token table)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        generate(student, sources, cfg, grammars)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"problems": len(sources), "threads": threads, "batch_size": cfg.batch_size,
            "max_new_tokens": cfg.max_new_tokens, "seconds": [round(t, 3) for t in times],
            "problems_per_s": len(sources) / best,
            "problems_per_s_median": len(sources) / sorted(times)[len(times) // 2],
            "checkpoint": spec.checkpoint, "target": spec.target}


# ------------------------------------------------------------------------------ the server
class Server:
    """``mathdistill serve RUN --port PORT --config FILE`` in a session of its own."""

    def __init__(self, run: Path, port: int, config: dict, log_dir: Path, label: str):
        self.run, self.port, self.config, self.label = run, port, config, label
        self.config_file = log_dir / f"serve-{label}.yaml"
        self.config_file.write_text(yaml.safe_dump(config))
        self.log_path = log_dir / f"serve-{label}.log"
        self.proc: subprocess.Popen | None = None
        self.sid: int | None = None
        self.startup_s = float("nan")
        self.stop_s = float("nan")
        self.leftover: list[str] = []

    def command(self) -> list[str]:
        exe = ROOT / ".venv" / "bin" / "mathdistill"
        return [str(exe), "serve", str(self.run), "--port", str(self.port),
                "--config", str(self.config_file)]

    def start(self, timeout_s: float) -> None:
        cmd = self.command()
        self._log = open(self.log_path, "wb")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.sid = self.proc.pid  # a session leader's session id is its pid
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.label} exited with {self.proc.returncode}; "
                                   f"log {self.log_path}:\n{self.tail()}")
            try:
                status, _ = request("GET", "127.0.0.1", self.port, "/healthz", None, 5.0)
                if status == 200:
                    self.startup_s = time.perf_counter() - t0
                    return
            except OSError:
                pass
            time.sleep(1.0)
        raise RuntimeError(f"server {self.label} not healthy within {timeout_s} s; log "
                           f"{self.log_path}:\n{self.tail()}")

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def session_dir(self) -> Path | None:
        """The Ray session directory of this server's own Ray (from its raylet's arguments)."""
        import re

        for line in self.session_processes():
            m = re.search(r"(/tmp/ray/session_[0-9_\-]+)/", line)
            if m and "raylet" in line:
                return Path(m.group(1))
        return None

    def batch_histogram(self) -> dict[float, float] | None:
        """The student replica's ``mathdistill_batch_size`` histogram (cumulative bucket counts
        by upper bound, +inf included), scraped from this Ray's metrics export port; None when
        it cannot be read. Ray exports metrics every few seconds, so it lags."""
        import re
        import urllib.request

        try:
            session = self.session_dir()
            port_file = next(session.glob("metrics_export_port_*"))
            port = int(port_file.read_text().strip())
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                text = r.read().decode()
        except Exception:  # noqa: BLE001 - a figure for the report only
            return None
        buckets: dict[float, float] = {}
        for line in text.splitlines():
            if line.startswith("ray_mathdistill_batch_size_bucket{"):
                m = re.search(r'le="([^"]+)"', line)
                if m:
                    le = float(m.group(1).replace("+Inf", "inf"))
                    buckets[le] = buckets.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
        return buckets or {}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system, all threads) so far of each process of this server's
        session, by a short name (``student``, ``gateway``, ``proxy``, ``raylet`` ...), plus
        ``bench client`` (this process: the client threads)."""
        tick = os.sysconf("SC_CLK_TCK")
        out: dict[str, float] = {}

        def add(name: str, pid: str) -> None:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                return
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick

        for line in self.session_processes():
            pid, _, args = line.partition(" ")
            out_name = _process_name(args)
            if out_name:
                add(out_name, pid)
        add("bench client", str(os.getpid()))
        return out

    def session_processes(self) -> list[str]:
        if self.sid is None:
            return []
        out = subprocess.run(["ps", "-o", "pid=,args=", "-s", str(self.sid)],
                             capture_output=True, text=True, check=False).stdout
        return [ln.strip() for ln in out.splitlines() if ln.strip()]

    def stop(self, timeout_s: float) -> None:
        if self.proc is None:
            return
        t0 = time.perf_counter()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                print(f"server {self.label}: no exit {timeout_s} s after SIGINT; killing its "
                      "session", flush=True)
                try:
                    os.killpg(self.sid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=30)
        self.stop_s = time.perf_counter() - t0
        # Ray's own processes of this session that outlived the server (give them a moment)
        for _ in range(20):
            self.leftover = self.session_processes()
            if not self.leftover:
                break
            time.sleep(0.5)
        if self.leftover:
            print(f"server {self.label}: {len(self.leftover)} processes of its session left; "
                  "killing them:\n  " + "\n  ".join(self.leftover), flush=True)
            try:
                os.killpg(self.sid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()
        self.proc = None


def _process_name(args: str) -> str | None:
    """A short name for one of the server's processes (None: not counted, e.g. ``ps``)."""
    table = [("student-", "student replica"), ("mathdistill:gateway", "gateway replica"),
             ("ProxyActor", "HTTP proxy"), ("ServeController", "Serve controller"),
             ("DashboardAgent", "dashboard agent"), ("RuntimeEnvAgent", "runtime-env agent"),
             ("dashboard.py", "dashboard"), ("raylet", "raylet"), ("gcs_server", "gcs"),
             ("mathdistill serve", "serve command (driver)"), ("log_monitor", "log monitor"),
             ("monitor.py", "autoscaler monitor"), ("ray::", "other ray workers")]
    for key, name in table:
        if key in args:
            return name
    if args.startswith(("ps ", "ps\t")):
        return None
    return "other"


# ------------------------------------------------------------------------------ the clients
def request(method: str, host: str, port: int, path: str, body: dict | None,
            timeout: float, conn: http.client.HTTPConnection | None = None):
    own = conn is None
    conn = conn or http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        return resp.status, payload
    finally:
        if own:
            conn.close()


def load_level(port: int, problems: list[dict], clients: int, n_requests: int,
               timeout: float) -> dict:
    """``clients`` threads, each with a keep-alive connection, sending ``n_requests`` in all
    (problem i % len(problems) for request i), back to back."""
    lock = threading.Lock()
    next_i = [0]
    lat: list[float] = []
    answers: list[tuple[str, str | None]] = []
    errors: list[str] = []
    server_ms: list[float] = []
    start = threading.Barrier(clients + 1)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        start.wait()
        while True:
            with lock:
                i = next_i[0]
                if i >= n_requests:
                    break
                next_i[0] += 1
            p = problems[i % len(problems)]
            t0 = time.perf_counter()
            try:
                status, payload = request("POST", "127.0.0.1", port, "/v1/solve",
                                          {"question": p["question"]}, timeout, conn)
            except (OSError, http.client.HTTPException) as e:
                dt = time.perf_counter() - t0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
                with lock:
                    lat.append(dt)
                    errors.append(f"transport: {type(e).__name__}: {e}")
                continue
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                if status != 200:
                    errors.append(f"HTTP {status}: {payload[:200]!r}")
                else:
                    out = json.loads(payload)
                    answers.append((p["id"], out["answer"]))
                    server_ms.append(out["latency_ms"])
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, "requests": n_requests, "seconds": round(wall, 3),
            "rps": n_requests / wall, "p50_ms": percentile(lat, 50) * 1000,
            "p99_ms": percentile(lat, 99) * 1000,
            "gateway_p50_ms": percentile(server_ms, 50),
            "errors": len(errors), "error_samples": errors[:5], "answers": answers}


def warm_up(port: int, problems: list[dict], n: int, timeout: float) -> None:
    if n > 0:
        load_level(port, problems[::-1], min(8, n), n, timeout)


def settled_histogram(server: "Server", quiet_s: float, max_s: float) -> dict[float, float] | None:
    """The batch-size histogram once Ray's metrics export has caught up: unchanged for
    ``quiet_s`` (Ray exports every few seconds), at most ``max_s``."""
    t_end = time.monotonic() + max_s
    last = server.batch_histogram()
    since = time.monotonic()
    while time.monotonic() < t_end:
        time.sleep(1.0)
        h = server.batch_histogram()
        if h != last:
            last, since = h, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
    return last


def batch_stats(before: dict | None, after: dict | None, requests: int) -> dict | None:
    """Batches formed between two histogram scrapes: how many, mean size (requests per
    batch), and how many fell in each bucket (``<=1``, ``2``, ``3-4``, ...)."""
    if before is None or after is None or not after:
        return None
    bounds = sorted(after)
    cum = [after[b] - before.get(b, 0.0) for b in bounds]
    batches = cum[-1]
    if batches <= 0:
        return None
    counts, prev_b, prev_c = {}, 0, 0.0
    for b, c in zip(bounds, cum):
        if c - prev_c > 0:
            lo = int(prev_b) + 1
            key = "inf" if b == float("inf") else (f"{lo}" if lo == int(b) else f"{lo}-{int(b)}")
            counts[key] = int(c - prev_c)
        prev_b, prev_c = b, c
    return {"batches": int(batches), "mean_size": round(requests / batches, 2),
            "sizes": counts}


def agreement(answers: list[tuple[str, str | None]], ref: dict[str, str | None]):
    same = sum(ref.get(i, "<missing>") == a for i, a in answers)
    diff = [(i, ref.get(i, "<missing>"), a) for i, a in answers
            if ref.get(i, "<missing>") != a]
    return same, len(answers), diff


def ray_procs() -> list[str]:
    out = subprocess.run(["pgrep", "-af", "ray::"], capture_output=True, text=True,
                         check=False).stdout
    return [ln for ln in out.splitlines() if ln.strip()]


# ------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "quickstart")
    ap.add_argument("--port", type=int, default=8300, help="batching on; off uses port + 1")
    ap.add_argument("--levels", default="1,8,32", help="concurrent clients, batching on")
    ap.add_argument("--requests", type=int, default=400, help="requests per level (>1 client)")
    ap.add_argument("--requests-single", type=int, default=200, help="requests at 1 client")
    ap.add_argument("--off-clients", type=int, default=32)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--batch-wait", type=float, default=0.01, help="batch_wait_timeout_s")
    ap.add_argument("--max-ongoing", type=int, default=64)
    ap.add_argument("--max-queued", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1, help="torch threads, offline")
    ap.add_argument("--offline-repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=120.0, help="client timeout per request")
    ap.add_argument("--startup-timeout", type=float, default=300.0)
    ap.add_argument("--stop-timeout", type=float, default=60.0)
    ap.add_argument("--metrics-quiet", type=float, default=11.0,
                    help="seconds the replica's exported batch-size histogram must stay "
                    "unchanged before it is read after a level (0: do not read it)")
    ap.add_argument("--idle-s", type=float, default=12.0,
                    help="seconds of idle after the warm-up, to measure the server's idle CPU "
                    "(0: none; CPU per request is then not net of it)")
    ap.add_argument("--keep-logs", action="store_true",
                    help="keep the servers' logs and config files (kept anyway on failure)")
    ap.add_argument("--skip-off", action="store_true", help="no batching-off server")
    args = ap.parse_args()

    t_begin = time.perf_counter()
    run = args.run.resolve()
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    problems = held_out(run)
    ref = reference_answers(run)
    load_before = os.getloadavg()
    ray_before = ray_procs()
    print(f"{len(problems)} held-out problems, {len(ref)} reference predictions; load "
          f"{' '.join(f'{x:.2f}' for x in load_before)} on {os.cpu_count()} CPUs; "
          f"{len(ray_before)} 'ray::' processes before", flush=True)

    # 1. offline
    off = offline(run, problems, args.threads, args.offline_repeats)
    print(f"offline generate: {off['problems']} problems, batch {off['batch_size']}, "
          f"{off['threads']} torch thread(s): {off['seconds']} s -> "
          f"{off['problems_per_s']:.1f} problems/s (best)", flush=True)

    base = {"replicas": 1, "num_cpus": 1, "max_batch_size": args.max_batch,
            "batch_wait_timeout_s": args.batch_wait, "max_ongoing_requests": args.max_ongoing,
            "max_queued_requests": args.max_queued}
    configs = {"on": base, "off": dict(base, max_batch_size=1)}
    results: dict[str, list[dict]] = {"on": [], "off": []}
    servers: dict[str, Server] = {}
    all_answers: list[tuple[str, str | None]] = []
    first_pass: list[tuple[str, str | None]] = []
    plan = [("on", args.port, levels)]
    if not args.skip_off:
        plan.append(("off", args.port + 1, [args.off_clients]))
    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    interrupted = False

    def _terminate(*_):  # SIGTERM stops the servers as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        for label, port, lv in plan:
            server = servers[label] = Server(run, port, configs[label], tmp, label)
            print(f"starting server '{label}' on port {port}: {configs[label]}", flush=True)
            try:
                server.start(args.startup_timeout)
                print(f"  healthy after {server.startup_s:.1f} s", flush=True)
                warm_up(port, problems, args.warmup, args.timeout)
                hist = settled_histogram(server, args.metrics_quiet, 40) \
                    if args.metrics_quiet > 0 else None
                # idle CPU of the server's processes (background: controller loops, metrics
                # export, log monitor), subtracted from each level's CPU per request
                idle0, t_idle = server.cpu_seconds(), time.perf_counter()
                time.sleep(args.idle_s)  # (no metrics scrape in this window)
                idle1, idle_wall = server.cpu_seconds(), time.perf_counter() - t_idle
                idle_rate = {k: (idle1[k] - idle0.get(k, 0.0)) / idle_wall for k in idle1} \
                    if args.idle_s > 0 else {}
                if args.idle_s > 0:
                    print(f"  idle CPU of the server's processes: "
                          f"{sum(v for k, v in idle_rate.items() if k != 'bench client') * 100:.0f}"
                          f"% of a core", flush=True)
                for c in lv:
                    n = args.requests_single if c == 1 else args.requests
                    cpu0 = server.cpu_seconds()
                    r = load_level(port, problems, c, n, args.timeout)
                    cpu1 = server.cpu_seconds()
                    r["cpu_ms_per_request"] = {
                        k: round((cpu1[k] - cpu0.get(k, 0.0)) * 1000 / n, 2) for k in cpu1
                        if cpu1[k] - cpu0.get(k, 0.0) > 0}
                    r["cpu_ms_per_request_net_of_idle"] = {
                        k: round(v - idle_rate.get(k, 0.0) * r["seconds"] * 1000 / n, 2)
                        for k, v in r["cpu_ms_per_request"].items()}
                    after = settled_histogram(server, args.metrics_quiet, 40) \
                        if args.metrics_quiet > 0 else None
                    r["batch"] = batch_stats(hist, after, n)
                    hist = after
                    all_answers.extend(r["answers"])
                    if label == "on" and not first_pass:
                        first_pass = r["answers"][:len(problems)]
                    same, total, _ = agreement(r["answers"], ref)
                    r["agreement"] = same / total if total else float("nan")
                    results[label].append(r)
                    print(f"  batching {label}, {c:>2} clients: {n} requests in "
                          f"{r['seconds']:.2f} s = {r['rps']:.1f} req/s; p50 {r['p50_ms']:.1f} "
                          f"ms, p99 {r['p99_ms']:.1f} ms (gateway p50 "
                          f"{r['gateway_p50_ms']:.1f} ms); errors {r['errors']}; agreement "
                          f"{same}/{total}", flush=True)
                    net = r["cpu_ms_per_request_net_of_idle"]
                    cpu = sorted(net.items(), key=lambda kv: -kv[1])
                    print(f"    CPU ms per request: {sum(r['cpu_ms_per_request'].values()):.1f} "
                          f"in all, {sum(net.values()):.1f} net of the idle rate: "
                          + ", ".join(f"{k} {v:.1f}" for k, v in cpu if abs(v) >= 0.1),
                          flush=True)
                    if r["batch"]:
                        b = r["batch"]
                        print(f"    batches formed by the replica: {b['batches']}, mean size "
                              f"{b['mean_size']:.2f}; by size {b['sizes']}", flush=True)
                    for e in r["error_samples"]:
                        print(f"    error: {e}", flush=True)
            finally:
                server.stop(args.stop_timeout)
                print(f"  server '{label}' stopped in {server.stop_s:.1f} s", flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted", flush=True)
    finally:
        for s in servers.values():
            s.stop(args.stop_timeout)
    if interrupted:
        sys.exit(130)
    if args.keep_logs:
        print(f"server logs and configs: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)

    load_after = os.getloadavg()
    ray_after = ray_procs()
    total_s = time.perf_counter() - t_begin

    # figures and targets
    on = {r["clients"]: r for r in results["on"]}
    off32 = results["off"][0] if results["off"] else None
    top = on.get(32) or on[max(on)]
    errors = sum(r["errors"] for rs in results.values() for r in rs)
    same, total, diff = agreement(all_answers, ref)
    same1, total1, _ = agreement(first_pass, ref)
    agree = same / total if total else float("nan")
    ratio_offline = top["rps"] / off["problems_per_s"]
    ratio_batching = top["rps"] / off32["rps"] if off32 else float("nan")
    targets = {
        "http_32_vs_offline_ge_0.6": ratio_offline >= 0.6,
        "batching_on_vs_off_ge_3": bool(off32) and ratio_batching >= 3,
        "zero_errors": errors == 0,
        "agreement_ge_0.99": agree >= 0.99,
    }

    print()
    print("| mode | clients | requests | req/s | p50 ms | p99 ms | errors | agreement | "
          "mean batch |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| offline generate ({off['threads']} thread, batch {off['batch_size']}) | - | "
          f"{off['problems']} | {off['problems_per_s']:.1f} | - | - | - | - | "
          f"{off['batch_size']} |")
    for label in ("on", "off"):
        for r in results[label]:
            mean = f"{r['batch']['mean_size']:.2f}" if r["batch"] else "-"
            print(f"| HTTP, batching {label} | {r['clients']} | {r['requests']} | "
                  f"{r['rps']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | "
                  f"{r['agreement']:.4f} | {mean} |")
    print()
    print(f"HTTP at {top['clients']} clients / offline: {ratio_offline:.2f}x (target >= 0.6): "
          f"{'PASS' if targets['http_32_vs_offline_ge_0.6'] else 'FAIL'}")
    print(f"batching on / off at {top['clients']} clients: {ratio_batching:.2f}x (target >= 3): "
          f"{'PASS' if targets['batching_on_vs_off_ge_3'] else 'FAIL'}")
    print(f"errors: {errors} (target 0): {'PASS' if targets['zero_errors'] else 'FAIL'}")
    print(f"agreement with predictions.jsonl: {same}/{total} = {agree:.4f} over every HTTP answer "
          f"(first pass, each question once: {same1}/{total1}) (target >= 0.99): "
          f"{'PASS' if targets['agreement_ge_0.99'] else 'FAIL'}")
    for i, want, got in diff[:10]:
        print(f"  disagree: {i}: predictions.jsonl {want!r}, HTTP {got!r}")
    print(f"load {load_before[0]:.2f} -> {load_after[0]:.2f}; server start-up "
          + ", ".join(f"{k} {s.startup_s:.1f} s" for k, s in servers.items())
          + f"; 'ray::' processes before {len(ray_before)}, after {len(ray_after)}; "
          f"processes of the servers' sessions left: "
          f"{sum(len(s.leftover) for s in servers.values())}; total {total_s:.0f} s")

    out = {
        "run": str(run), "problems": len(problems),
        "offline_problems_per_s": round(off["problems_per_s"], 2),
        "offline_seconds": off["seconds"], "offline_threads": off["threads"],
        "offline_batch_size": off["batch_size"],
        "serve_config_on": configs["on"], "serve_config_off": configs["off"],
        "http": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()
                  if k not in ("answers", "error_samples")} | {"batching": label}
                 for label in ("on", "off") for r in results[label]],
        "http_vs_offline": round(ratio_offline, 3),
        "batching_on_vs_off": round(ratio_batching, 3),
        "errors": errors,
        "agreement": round(agree, 4), "agreement_n": total,
        "agreement_first_pass": round(same1 / total1, 4) if total1 else None,
        "disagreements": diff[:20],
        "targets": targets,
        "server_startup_s": {k: round(s.startup_s, 1) for k, s in servers.items()},
        "leftover_session_processes": sum(len(s.leftover) for s in servers.values()),
        "ray_procs_before": len(ray_before), "ray_procs_after": len(ray_after),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "total_s": round(total_s, 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
