"""A real Serve application on loopback: `mathdistill serve` in its own process (its own local
Ray), serving a tiny pot student that has learned five programs by heart (one hostile, one that
never ends). Routes, bad input, concurrency, overload, a replica killed under load, the
`openai` client, graceful shutdown, and `serve run` with a Serve config file."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics_scraper import MetricsScraper  # noqa: E402
from serve_students import ANSWERS, PROGRAMS, train_program_student  # noqa: E402

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
Q_ADD, Q_MUL, Q_DIV, Q_HOSTILE, Q_LOOP = list(PROGRAMS)
EXPECTED = {q: a for q, a in ANSWERS.items() if a is not None}
STARTUP_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


def call(port: int, method: str, path: str, body: bytes | dict | list | None = None,
         ctype: str | None = "application/json", timeout: float = 90.0) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        headers = {"Content-Type": ctype} if ctype else {}
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def solve(port: int, question: str, timeout: float = 90.0, **fields) -> Reply:
    return call(port, "POST", "/v1/solve", {"question": question, **fields}, timeout=timeout)


def _wait_healthy(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if call(port, "GET", "/healthz", timeout=5).status == 200:
                return
        except OSError:
            pass
        time.sleep(1.0)
    pytest.fail(f"the server did not become healthy in {STARTUP_S} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait_s: float = 90.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            pytest.fail("the server did not stop in time")
    return proc.returncode


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env["PYTHONPATH"] = str(REPO)
    return env


@dataclass
class Server:
    port: int
    proc: subprocess.Popen
    log: Path
    checkpoint: Path
    metrics_port: int


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    return train_program_student(tmp_path_factory.mktemp("serve-student"))


@pytest.fixture(scope="module")
def server(student, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    config = folder / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "replicas": 2, "num_cpus": 0.5, "max_batch_size": 8, "max_ongoing_requests": 8,
        "max_queued_requests": 8, "request_timeout_s": 60,
        "sandbox": {"timeout_s": 1.0, "workers": 1, "warmup": False}}))
    port, metrics_port = _free_port(), _free_port()
    ray_file = folder / "ray.yaml"
    ray_file.write_text(yaml.safe_dump({"metrics_export_port": metrics_port}))
    log = folder / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "mathdistill"), "serve", f"pot={student}", "--port", str(port),
             "--config", str(config), "--ray", str(ray_file)],
            cwd=folder, env=_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(port, proc, log)
        yield Server(port, proc, log, student, metrics_port)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


# ------------------------------------------------------------------------------ the routes
def test_the_server_exports_its_metrics_to_ray(server: Server) -> None:
    """Ray's metrics export (the port of the `--ray` file) counts each request by model,
    route and status, each answer not given by why, and times the requests, the batches and
    the sandbox. (First of the server's tests: no earlier request is still on its way to the
    export, which Ray refreshes every ten seconds.)"""
    from distill.metrics import METRICS

    serving = {name for name, m in METRICS.items() if m.serving}
    with MetricsScraper(port=server.metrics_port, settle_s=0) as metrics:
        for question in (Q_ADD, Q_MUL, Q_HOSTILE):
            assert solve(server.port, question).status == 200
        assert call(server.port, "POST", "/v1/solve", {"question": " "}).status == 400
        assert metrics.wait_for(serving) == set()
        # the counters are exported every ten seconds: wait until all four requests are in
        assert metrics.wait_until(lambda m: m.delta("request_latency_ms") >= 4)
    assert metrics.delta("requests", model="pot", route="solve", status=200) == 3
    assert metrics.delta("requests", route="solve", status=400) == 1
    assert metrics.delta("answer_errors", model="pot", error="forbidden") == 1
    assert metrics.delta("answer_errors") == 1
    assert metrics.delta("request_latency_ms", model="pot", route="solve") == 4
    for name in ("batch_size", "solve_latency_ms", "sandbox_ms"):
        assert metrics.delta(name, model="pot") >= 1, name  # batches: 1 to 3 questions each


def test_every_route_answers(server: Server) -> None:
    port = server.port
    deadline = time.monotonic() + 30  # printed once serve.run returns, right after "healthy"
    while "serving at http://127.0.0.1:" not in server.log.read_text():
        assert time.monotonic() < deadline, server.log.read_text()[-2000:]
        time.sleep(0.5)
    r = solve(port, Q_ADD)
    assert r.status == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"model", "answer", "kind", "rationale", "equation", "program",
                         "quantities", "votes", "error", "latency_ms"}
    assert (body["model"], body["answer"], body["kind"], body["program"], body["quantities"],
            body["error"], body["votes"]) == ("pot", "7", "program", "ans = 3 + 4", ["3", "4"],
                                              None, None)
    voted = solve(port, Q_MUL, num_samples=3, model="pot").json()
    assert voted["answer"] == "60" and voted["votes"] == {"60": 3}
    batch = call(port, "POST", "/v1/solve/batch", {"questions": [Q_DIV, Q_ADD, Q_MUL]}).json()
    assert [x["answer"] for x in batch["results"]] == ["5", "7", "60"]
    models = call(port, "GET", "/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["pot"] and models["object"] == "list"
    health = call(port, "GET", "/healthz")
    assert health.status == 200 and health.json()["models"] == {"pot": True}
    assert call(port, "GET", "/-/healthz").status == 200
    assert call(port, "GET", "/-/routes").status == 200
    chat = call(port, "POST", "/v1/chat/completions", {
        "model": "pot", "messages": [{"role": "system", "content": "Solve."},
                                     {"role": "user", "content": Q_MUL}]}).json()
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"] == {"role": "assistant",
                                             "content": "ans = 12 * 5\nThe answer is 60."}
    assert chat["usage"]["total_tokens"] == chat["usage"]["prompt_tokens"] + \
        chat["usage"]["completion_tokens"] > 0
    comp = call(port, "POST", "/v1/completions", {"prompt": [Q_ADD, Q_DIV], "max_tokens": 32}).json()
    assert [c["text"].splitlines()[-1] for c in comp["choices"]] == ["The answer is 7.",
                                                                   "The answer is 5."]


def test_hostile_programs_are_contained_and_the_next_request_is_fine(server: Server) -> None:
    hostile = solve(server.port, Q_HOSTILE).json()
    assert (hostile["answer"], hostile["error"]) == (None, "forbidden")
    assert hostile["program"] == PROGRAMS[Q_HOSTILE]
    t0 = time.monotonic()
    loop = solve(server.port, Q_LOOP).json()
    assert (loop["answer"], loop["error"]) == (None, "timeout")
    assert time.monotonic() - t0 < 30
    assert solve(server.port, Q_ADD).json()["answer"] == "7"


def test_the_openai_client_works_unchanged(server: Server) -> None:
    import openai  # the dev extra installs it: a missing client is a failure, not a skip
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="unused")
    assert [m.id for m in client.models.list()] == ["pot"]
    chat = client.chat.completions.create(model="pot", n=2, temperature=0, seed=3,
                                          messages=[{"role": "user", "content": Q_DIV}])
    assert [c.message.content.splitlines()[-1] for c in chat.choices] == ["The answer is 5."] * 2
    assert chat.usage.completion_tokens > 0
    comp = client.completions.create(model="pot", prompt=Q_ADD, max_tokens=32)
    assert comp.choices[0].text.endswith("The answer is 7.")
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "1"}])
    assert e.value.body["code"] == "model_not_found"


# ------------------------------------------------------------------------------ bad input
BAD_INPUT = [
    ("malformed JSON", "POST", "/v1/solve", b"{question:", "application/json", 400),
    ("empty body", "POST", "/v1/solve", b"", "application/json", 400),
    ("form content type", "POST", "/v1/solve", b"question=1", "application/x-www-form-urlencoded", 415),
    ("no content type", "POST", "/v1/solve", b'{"question": "1"}', None, 415),
    ("invalid UTF-8", "POST", "/v1/solve", b'{"question": "\xc3\x28"}', "application/json", 400),
    ("body over 1 MiB", "POST", "/v1/solve", json.dumps({"question": "x" * (1 << 20)}).encode(),
     "application/json", 413),
    ("JSON array", "POST", "/v1/solve", [Q_ADD], "application/json", 400),
    ("missing question", "POST", "/v1/solve", {"model": "pot"}, "application/json", 400),
    ("empty question", "POST", "/v1/solve", {"question": " \n "}, "application/json", 400),
    ("number as question", "POST", "/v1/solve", {"question": 12}, "application/json", 400),
    ("question over the limit", "POST", "/v1/solve", {"question": "7 " * 2100}, "application/json", 400),
    ("unknown model", "POST", "/v1/solve", {"question": Q_ADD, "model": "nope"}, "application/json", 404),
    ("num_samples 0", "POST", "/v1/solve", {"question": Q_ADD, "num_samples": 0}, "application/json", 400),
    ("num_samples 17", "POST", "/v1/solve", {"question": Q_ADD, "num_samples": 17}, "application/json", 400),
    ("unknown field", "POST", "/v1/solve", {"question": Q_ADD, "temp": 1}, "application/json", 400),
    ("bad lang", "POST", "/v1/solve", {"question": Q_ADD, "lang": "de"}, "application/json", 400),
    ("empty batch", "POST", "/v1/solve/batch", {"questions": []}, "application/json", 400),
    ("batch of 257", "POST", "/v1/solve/batch", {"questions": [Q_ADD] * 257}, "application/json", 400),
    ("chat without a user", "POST", "/v1/chat/completions",
     {"messages": [{"role": "system", "content": "hi"}]}, "application/json", 400),
    ("chat streaming", "POST", "/v1/chat/completions",
     {"stream": True, "messages": [{"role": "user", "content": Q_ADD}]}, "application/json", 400),
    ("unknown route", "GET", "/v1/nothing", None, None, 404),
    ("wrong method", "GET", "/v1/solve", None, None, 405),
]


def test_bad_input_is_a_4xx_in_openai_shape_and_the_server_keeps_serving(server: Server) -> None:
    for name, method, path, body, ctype, status in BAD_INPUT:
        r = call(server.port, method, path, body, ctype)
        assert r.status == status, (name, r.status, r.body[:300])
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}, name
        assert err["type"] == "invalid_request_error" and err["message"], name
        assert "Traceback" not in r.body.decode("utf-8", "replace"), name
    assert solve(server.port, Q_ADD).json()["answer"] == "7"


# ------------------------------------------------------------------------------ under load
def test_concurrent_requests_get_their_own_answers(server: Server) -> None:
    questions = [list(EXPECTED)[i % len(EXPECTED)] for i in range(48)]

    def ask(i_q):
        i, q = i_q
        if i % 4 == 3:
            r = call(server.port, "POST", "/v1/solve/batch", {"questions": [q, Q_ADD]})
            assert r.status == 200, (r.status, r.body[:300])
            return q, [x["answer"] for x in r.json()["results"]]
        r = solve(server.port, q, num_samples=1 + i % 3)
        assert r.status == 200, (r.status, r.body[:300])
        return q, r.json()["answer"]

    # 12 clients: within 2 replicas x 8 requests held (a busier server answers 503: see below)
    with ThreadPoolExecutor(12) as pool:
        for q, got in pool.map(ask, enumerate(questions)):
            want = [EXPECTED[q], "7"] if isinstance(got, list) else EXPECTED[q]
            assert got == want, (q, got)


def test_overload_is_a_503_with_retry_after_and_nothing_hangs(server: Server) -> None:
    def ask(_):
        try:
            r = solve(server.port, Q_ADD, timeout=120)
            return r.status, r.headers.get("retry-after"), r.json()
        except OSError as e:  # a transport error would be a failure of the server
            return None, None, repr(e)

    t0 = time.monotonic()
    with ThreadPoolExecutor(160) as pool:
        replies = list(pool.map(ask, range(320)))
    assert time.monotonic() - t0 < 150
    statuses = [s for s, _, _ in replies]
    assert set(statuses) <= {200, 503}, [r for r in replies if r[0] not in (200, 503)][:3]
    refused = [r for r in replies if r[0] == 503]
    assert refused, "320 requests at once never overflowed 2 x (8 ongoing) + 8 queued"
    assert all(retry == "1" and body["error"]["type"] == "overloaded_error"
               for _, retry, body in refused)
    assert all(body["answer"] == "7" for s, _, body in replies if s == 200)
    assert solve(server.port, Q_ADD).json()["answer"] == "7"


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _replica_pids(server: Server, name: str = "ServeReplica:mathdistill:student-0") -> list[int]:
    """The replica processes of this server's Ray (its raylet is the server's descendant)."""
    out = subprocess.run(["pgrep", "-f", name], capture_output=True, text=True).stdout
    mine = []
    for pid in map(int, out.split()):
        p = pid
        while p > 1 and p != server.proc.pid:
            p = _parent(p)
        if p == server.proc.pid and _parent(pid) != pid:
            mine.append(pid)
    # a sandbox worker forked by a replica carries its title too: keep the top-most ones
    return [p for p in mine if _parent(p) not in mine]


def test_a_replica_killed_under_load(server: Server) -> None:
    before = _replica_pids(server)
    assert len(before) == 2, before
    stop = threading.Event()
    replies: list = []

    def load():
        while not stop.is_set():
            t = time.monotonic()
            try:
                r = solve(server.port, Q_MUL, timeout=90)
                replies.append((r.status, time.monotonic() - t, r.json().get("answer")))
            except OSError as e:
                replies.append((None, time.monotonic() - t, repr(e)))

    threads = [threading.Thread(target=load) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    os.kill(before[0], signal.SIGKILL)
    time.sleep(6.0)
    stop.set()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a request hung"
    assert replies and all(s in (200, 503) for s, _, _ in replies), replies[:5]
    assert all(a == "60" for s, _, a in replies if s == 200)
    # recovery: Serve starts a replacement; afterwards every request succeeds
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_replica_pids(server)) < 2:
        time.sleep(1.0)
    assert len(_replica_pids(server)) == 2 and before[0] not in _replica_pids(server)
    for q in (Q_ADD, Q_MUL, Q_DIV) * 3:
        r = solve(server.port, q)
        assert r.status == 200 and r.json()["answer"] == EXPECTED[q]


# ------------------------------------------------------------------------------ stopping
def test_sigterm_stops_the_server_cleanly(server: Server) -> None:
    replicas = _replica_pids(server, "ServeReplica:mathdistill")
    assert len(replicas) == 3  # the gateway and two student replicas
    t0 = time.monotonic()
    assert _stop(server.proc, signal.SIGTERM) == 0, server.log.read_text()[-2000:]
    assert time.monotonic() - t0 < 90
    assert "stopping" in server.log.read_text()
    with pytest.raises(OSError):
        call(server.port, "GET", "/healthz", timeout=5)
    time.sleep(2.0)
    assert [p for p in replicas if Path(f"/proc/{p}").exists()] == []  # nothing left behind


def test_serve_run_with_the_config_file(student: Path, tmp_path: Path) -> None:
    """The shipped serve/config.yaml with only the student and the port changed."""
    from serve.schema_check import check_serve_file

    data = yaml.safe_load((REPO / "serve" / "config.yaml").read_text())
    port = _free_port()
    data["http_options"]["port"] = port
    app = data["applications"][0]
    app["args"]["runs"] = [f"tiny={student.name}"]  # relative: read where `serve run` runs
    app["args"]["serve"].update({"num_cpus": 0.5, "sandbox": {"workers": 1, "warmup": False}})
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump(data))
    assert check_serve_file(config) == []
    log = tmp_path / "serve-run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(BIN / "serve"), "run", str(config)], cwd=student.parent,
                                env=_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_healthy(port, proc, log)
        assert [m["id"] for m in call(port, "GET", "/v1/models").json()["data"]] == ["tiny"]
        assert solve(port, Q_DIV).json()["answer"] == "5"
    finally:
        _stop(proc, signal.SIGINT)
