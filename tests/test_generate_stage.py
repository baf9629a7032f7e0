"""The generate stage: the hf engine with a tiny random model through Ray Data end to end; the
openai engine against a scripted OpenAI-compatible teacher with correct, wrong, hostile and
failing answers (verdicts checked independently, failed rows retried on the next run); a run
killed with SIGKILL and run again (no duplicates, no losses, rows identical to an uninterrupted
run, the teacher never asked again for a committed row); the CLI; and, on the real GSM8K test
split (``shared_data``), ``--strategy pot`` verdicts against an independent check of every
program, hostile ones included."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from distill.data.synthetic import SyntheticConfig, generate
from distill.grading import answers_match
from distill.quantities import parse_answer
from distill.records import RATIONALE_SCHEMA
from distill.sandbox import SandboxConfig
from distill.generate import GenerateConfig, generate_dataset, read_rationales
from distill.generate.cli import generate_command
from distill.generate.stage import StageMismatchError
from distill.generate.testing import TeacherServer, build_tiny_lm

REPO = Path(__file__).resolve().parents[1]
PROBLEMS = [p for p in generate(SyntheticConfig(), "train")[:40] if p["lang"] == "en"][:18]
HOSTILE = {
    "loop": "while True:\n    pass",
    "shell": "import os\nos.system('touch /tmp/mathdistill-pwned')\nans = 1",
    "read": "ans = len(open('/etc/passwd').read())",
    "net": "import socket\nsocket.create_connection(('127.0.0.1', 22))\nans = 1",
}


def _question(endpoint: str, body: dict) -> str:
    text = body["messages"][-1]["content"] if endpoint == "chat" else body["prompt"]
    return text.rsplit("Problem:", 1)[1].split("\n")[0].strip()


class ScriptedTeacher:
    """Answers pot prompts from each synthetic problem's gold equation, or as ``plan`` says:
    'wrong' (off by one), a HOSTILE key (that program), 'fail' (the server errors: HTTP 500)."""

    def __init__(self, problems, plan=None):
        self.by_question = {p["question"]: p for p in problems}
        self.plan = dict(plan or {})
        self.asked: list[str] = []  # problem ids, in the order asked

    def __call__(self, endpoint: str, body: dict) -> str:
        p = self.by_question[_question(endpoint, body)]
        self.asked.append(p["id"])
        kind = self.plan.get(p["id"], "correct")
        if kind == "fail":
            raise RuntimeError("teacher overloaded")
        if kind in HOSTILE:
            return f"```python\n{HOSTILE[kind]}\n```"
        rhs = p["equation"].split("=", 1)[1]
        return f"```python\nans = {rhs}{' + 1' if kind == 'wrong' else ''}\n```"


def _config(url: str, **kw) -> GenerateConfig:
    return GenerateConfig(engine="openai", model="scripted-teacher",
                          openai={"base_url": url, "backoff_s": 0.01, "max_retries": 1,
                                  "max_concurrency": kw.pop("max_concurrency", 4)},
                          **{"batch_size": 4, "strategy": "pot", **kw})


SANDBOX = SandboxConfig(timeout_s=1.0, workers=1)


def _shard_keys(out: Path) -> list[tuple]:
    keys = []
    for f in sorted((out / "rationales").glob("*.parquet")):
        t = pq.read_table(f, columns=["id", "strategy", "sample_idx"])
        keys += list(zip(*(t.column(c).to_pylist() for c in ("id", "strategy", "sample_idx"))))
    return keys


# ---------------------------------------------------------------------------------- hf
@pytest.mark.ray
def test_hf_engine_through_ray_data(ray_local, tmp_path):
    model = build_tiny_lm(tmp_path / "teacher")
    problems = PROBLEMS[:6]
    cfg = GenerateConfig(engine="hf", model=model, strategy="cot", samples=2, batch_size=4,
                         sampling={"max_tokens": 8, "temperature": 0.7}, hf={"batch_size": 4})
    summary = generate_dataset(problems, cfg, tmp_path / "out")
    assert summary["rows"] == summary["generated"] == 12
    assert sum(summary[v] for v in ("correct", "wrong", "error", "unparsable")) == 12
    assert summary["generation_failed"] == 0 and summary["tokens_out"] > 0 and summary["rows_per_s"] > 0
    table = read_rationales(tmp_path / "out")
    assert table.schema == RATIONALE_SCHEMA
    rows = table.to_pylist()
    assert sorted((r["id"], r["sample_idx"]) for r in rows) == sorted(
        (p["id"], k) for p in problems for k in range(2))
    assert all(r["source"] == model and r["completion"] is not None for r in rows)
    assert json.loads(rows[0]["prompt"])[-1]["content"] == f"Problem: {problems[0]['question']}"
    meta = json.loads(rows[0]["meta"])
    assert meta["engine"] == "hf" and meta["chat"] is True and meta["calls"][0]["template"] == "cot"
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["rows"] == 12
    again = generate_dataset(problems, cfg, tmp_path / "out")
    assert again["generated"] == 0 and again["reused"] == 12


# ------------------------------------------------------------------------------ openai
@pytest.mark.ray
def test_openai_pot_stage_verdicts_and_retry_of_failed_rows(ray_local, tmp_path):
    problems = PROBLEMS[:12]
    ids = [p["id"] for p in problems]
    plan = {ids[1]: "wrong", ids[2]: "loop", ids[3]: "shell", ids[4]: "read", ids[5]: "net",
            ids[6]: "fail", ids[7]: "fail"}
    teacher = ScriptedTeacher(problems, plan)
    with TeacherServer(teacher) as srv:
        cfg = _config(srv.url)
        first = generate_dataset(problems, cfg, tmp_path / "out", sandbox=SANDBOX)
        assert (first["rows"], first["generation_failed"]) == (12, 2)
        expected = {"correct": 12 - 7, "wrong": 1, "error": 4 + 2, "unparsable": 0}
        assert {k: first[k] for k in expected} == expected
        rows = {r["id"]: r for r in read_rationales(tmp_path / "out").to_pylist()}
        for pid, kind in plan.items():
            r = rows[pid]
            want = {"wrong": "wrong", "fail": "error"}.get(kind, "error")
            assert r["verdict"] == want, (kind, r["error"])
            if kind in HOSTILE:
                assert r["program"] == HOSTILE[kind] and r["completion"] is not None
            if kind == "fail":
                assert r["completion"] is None and "HTTP 500" in r["error"]
        assert not os.path.exists("/tmp/mathdistill-pwned")
        # the teacher is back: only the two failed rows are asked again
        teacher.plan = {k: v for k, v in plan.items() if v != "fail"}
        asked_before = len(teacher.asked)
        second = generate_dataset(problems, cfg, tmp_path / "out", sandbox=SANDBOX)
        assert sorted(teacher.asked[asked_before:]) == sorted([ids[6], ids[7]])
    assert (second["generated"], second["reused"], second["generation_failed"]) == (2, 10, 0)
    assert second["correct"] == 7 and second["rows"] == 12
    keys = _shard_keys(tmp_path / "out")
    assert len(keys) == len(set(keys)) == 12  # the superseded failures were removed
    with pytest.raises(StageMismatchError, match="model"):
        generate_dataset(problems, cfg.model_copy(update={"model": "other"}), tmp_path / "out")


# --------------------------------------------------------------------------- kill + rerun
@pytest.mark.ray
@pytest.mark.slow
def test_killed_run_resumes_without_duplicates_losses_or_second_asks(ray_local, tmp_path):
    problems = PROBLEMS
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"id": p["id"].split("/")[-1], "question": p["question"],
                                        "answer": p["answer"], "equation": p["equation"]}) + "\n"
                            for p in problems))
    from distill.data.loaders import load_file

    loaded = load_file(data).problems
    teacher = ScriptedTeacher(loaded, {loaded[4]["id"]: "wrong", loaded[9]["id"]: "read"})
    with TeacherServer(teacher, delay_s=0.3) as srv:
        cfg = _config(srv.url, max_concurrency=1, batch_size=3)
        (tmp_path / "cfg.yaml").write_text(json.dumps(cfg.model_dump(mode="json")))
        out = tmp_path / "out"
        env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_DEDUP_LOGS": "0"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "distill.generate.cli", "--data", str(data), "--out", str(out),
             "--config", str(tmp_path / "cfg.yaml"), "--json"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        try:
            deadline = time.time() + 120
            while time.time() < deadline and len(list((out / "rationales").glob("part-*.parquet"))) < 2:
                assert proc.poll() is None, "the run ended before it could be killed"
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and everything it started
            proc.wait()
        committed = set(_shard_keys(out))
        asked_first = list(teacher.asked)
        assert 6 <= len(committed) < len(loaded)
        # generation and verification share an actor: at most the batches in flight are lost
        assert len(asked_first) - len(committed) <= 3 * 3
        resumed = generate_dataset(loaded, cfg, out)  # the CLI's default sandbox, as the killed run
        asked_again = teacher.asked[len(asked_first):]
    with TeacherServer(ScriptedTeacher(loaded, teacher.plan)) as quick:  # an uninterrupted run
        reference = generate_dataset(loaded, cfg.model_copy(update={"openai": cfg.openai.model_copy(
            update={"base_url": quick.url})}), tmp_path / "reference", local=True)
    assert not {k[0] for k in committed} & set(asked_again)  # never asked twice
    assert set(asked_again) == {p["id"] for p in loaded} - {k[0] for k in committed}
    keys = _shard_keys(out)
    assert len(keys) == len(set(keys)) == len(loaded)  # no duplicates, no losses
    assert not list((out / "rationales").glob(".*"))  # no temporary files left
    assert resumed["rows"] == len(loaded) and resumed["reused"] == len(committed)
    got = read_rationales(out).drop_columns(["latency_s"]).to_pylist()
    want = read_rationales(tmp_path / "reference").drop_columns(["latency_s"]).to_pylist()
    assert got == want
    assert {k: reference[k] for k in ("correct", "wrong", "error")} == {"correct": 16, "wrong": 1, "error": 1}


# --------------------------------------------------------------------------------- CLI
def test_cli_local_json_config_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("MATHDISTILL_DATA_DIR", str(tmp_path))
    problems = PROBLEMS[:5]
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps({"question": p["question"], "answer": p["answer"],
                                        "equation": p["equation"]}) + "\n" for p in problems))
    from distill.data.loaders import load_file

    app = typer.Typer()
    app.command()(generate_command)
    runner = CliRunner()
    teacher = ScriptedTeacher(load_file(data).problems)
    with TeacherServer(teacher) as srv:
        (tmp_path / "gen.yaml").write_text(f"strategy: cot\nmodel: from-file\nbatch_size: 2\n"
                                           f"openai: {{base_url: '{srv.url}', max_retries: 0}}\n")
        args = ["--data", str(data), "--out", str(tmp_path / "out"), "--local", "--json",
                "--config", str(tmp_path / "gen.yaml"), "--strategy", "pot",
                "--model", "scripted-teacher", "--samples", "2", "--temperature", "0.5"]
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        summary = json.loads(res.stdout.strip().splitlines()[-1])
        for key in ("rows", "correct", "wrong", "error", "unparsable", "pass_rate", "tokens_in",
                    "tokens_out", "rows_per_s"):
            assert key in summary
        assert summary["rows"] == 10 and summary["correct"] == 10 and summary["strategy"] == "pot"
        assert summary["dataset"] == "mine:all"
        assert len(srv.requests) == 10 and srv.requests[0][1]["temperature"] == 0.5
        assert len({b["seed"] for _, b in srv.requests}) == 10  # a seed per (problem, sample)
        # progress goes to stderr, the summary alone to stdout
        assert "generate:" in res.stderr and "generate:" not in res.stdout
        again = runner.invoke(app, args[:-2] + ["--temperature", "0.9"])
        assert again.exit_code == 2 and "another configuration" in again.stderr
    bad = runner.invoke(app, ["--data", str(data), "--out", str(tmp_path / "o2"), "--local",
                              "--model", "m", "--strategy", "tot"])
    assert bad.exit_code == 2 and "unknown strategy 'tot'" in bad.stderr
    missing = runner.invoke(app, ["--data", "nope", "--out", str(tmp_path / "o3"), "--local",
                                  "--model", "m"])
    assert missing.exit_code == 2 and "error:" in missing.stderr


# ------------------------------------------------------------------------- GSM8K (real)
_CALC = re.compile(r"<<([^=<>]+)=([^<>]*)>>")


def _gold_program(solution: str) -> str:
    """A program built from a GSM8K solution's calculator notes (<<48/2=24>>)."""
    steps = [m.group(1).strip() for m in _CALC.finditer(solution)]
    lines = [f"step{i} = {expr}" for i, expr in enumerate(steps)]
    return "\n".join(lines + [f"ans = step{len(steps) - 1}" if steps else "ans = None"])


def _independent_verdict(program: str, gold: str) -> str:
    """Run a (benign, test-built) program in a plain Python subprocess and grade it."""
    wrapper = program + "\nimport json\nprint(json.dumps(repr(ans)) if not isinstance(ans, (int, float)) else repr(ans))"
    try:
        out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "error"
    if out.returncode != 0 or not out.stdout.strip():
        return "error"
    text = out.stdout.strip().splitlines()[-1]
    try:
        value = float(text) if text.startswith(("-", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9")) else None
    except ValueError:
        value = None
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return "error"
    return "correct" if answers_match(parse_answer(value).value, gold) else "wrong"


@pytest.mark.ray
@pytest.mark.shared_data
def test_gsm8k_pot_verdicts_agree_with_an_independent_check(ray_local, shared_data_dir, tmp_path):
    from distill.data import get_loader

    problems = get_loader("gsm8k").load("test", shared_data_dir).problems[:40]
    programs, expected = {}, {}
    hostile = list(HOSTILE.values()) + ["import ctypes\nans = 1", "x = ' ' * (10 ** 10)\nans = 1",
                                        "__import__('subprocess').run(['id'])\nans = 1"]
    for i, p in enumerate(problems):
        solution = json.loads(p["meta"])["solution"]
        program = _gold_program(solution)
        if i % 5 == 3:
            program += "\nans = ans * 2 + 1"  # a teacher's arithmetic slip
        if i % 6 == 5:
            program = hostile[(i // 6) % len(hostile)]
            expected[p["id"]] = "error"
        else:
            expected[p["id"]] = _independent_verdict(program, p["answer"])
        programs[p["question"]] = program

    def teacher(endpoint, body):
        return f"Let me write a program.\n```python\n{programs[_question(endpoint, body)]}\n```"

    with TeacherServer(teacher) as srv:
        cfg = _config(srv.url, batch_size=10)
        summary = generate_dataset(problems, cfg, tmp_path / "gsm8k", sandbox=SANDBOX)
    rows = read_rationales(tmp_path / "gsm8k").to_pylist()
    got = {r["id"]: r["verdict"] for r in rows}
    assert got == expected
    assert summary["rows"] == 40 and summary["correct"] >= 20
    assert not os.path.exists("/tmp/mathdistill-pwned")


# ------------------------------------------------------------------- multi-call strategies
def test_multi_call_strategies_through_the_openai_engine(tmp_path):
    """KPDD in three calls and FLTT with its format fix, end to end in one process: each call
    sees what the previous one answered, and the rows carry every step."""
    problems = PROBLEMS[:4]
    by_q = {p["question"]: p for p in problems}
    by_masked = {p["masked_question"]: p for p in problems}

    def teacher(endpoint, body):
        system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
        if "core question: the one question" in system:
            return "Core question: " + _question(endpoint, body).rsplit(". ", 1)[-1]
        if "problem-solving information" in system and "Do not solve" in system:
            assert "Core question:" in user
            return "1. the numbers of the problem"
        if "Equation that could not be read" in user:
            masked = user.split("Problem: ", 1)[1].split("\nEquation that could not be read")[0]
            return "Equation: " + by_masked[masked]["masked_equation"]
        if "placeholders" in system:
            return "Equation: " + by_masked[_question(endpoint, body)]["masked_equation"] + " boxes"
        assert "Problem-solving information:\n1. the numbers" in user
        return f"```python\nans = {by_q[_question(endpoint, body)]['equation'].split('=', 1)[1]}\n```"

    with TeacherServer(teacher) as srv:
        kp = _config(srv.url, strategy="kpdd_pot")
        s1 = generate_dataset(problems, kp, tmp_path / "kpdd", local=True, sandbox=SANDBOX)
        fl = _config(srv.url, strategy="fltt_masked_equation")
        s2 = generate_dataset(problems, fl, tmp_path / "fltt", local=True, sandbox=SANDBOX)
        assert len(srv.requests) == 4 * 3 + 4 * 2
    assert (s1["correct"], s2["correct"]) == (4, 4)
    kp_rows = read_rationales(tmp_path / "kpdd").to_pylist()
    assert all(r["key_points"].startswith("Core question: ") for r in kp_rows)
    assert [c["step"] for c in json.loads(kp_rows[0]["meta"])["calls"]] == [
        "core_question", "information", "solve"]
    fl_rows = read_rationales(tmp_path / "fltt").to_pylist()
    meta = json.loads(fl_rows[0]["meta"])
    assert meta["check"]["format_fixed"] and meta["check"]["original_equation"].endswith("boxes")
    assert {r["equation"] for r in fl_rows} == {p["masked_equation"] for p in problems}
    assert all(r["masked_equation"] == r["equation"] for r in fl_rows)
    assert all(r["masked_equation"] is None for r in kp_rows)


@pytest.mark.ray
def test_ray_run_stops_early_and_releases_its_actors(ray_local, tmp_path):
    """Every request fails the same way: the Ray pipeline is stopped after
    stop_after_failures rows (GenerationFailedError, the summary written), and the next run
    on the same Ray cluster works."""
    from distill.generate.stage import GenerationFailedError

    with TeacherServer(lambda e, b: "x", fail_first=10**6, fail_status=422) as srv:
        cfg = _config(srv.url, batch_size=2, stop_after_failures=3, max_concurrency=1)
        with pytest.raises(GenerationFailedError, match=r"stopped early.*HTTP 422") as e:
            generate_dataset(PROBLEMS, cfg, tmp_path / "out", sandbox=SANDBOX)
        assert srv.statuses.count(422) == 3
    assert e.value.summary["stopped"] and e.value.summary["generated"] < len(PROBLEMS)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["stopped"]
    with TeacherServer(ScriptedTeacher(PROBLEMS[:4])) as srv:
        ok = generate_dataset(PROBLEMS[:4], _config(srv.url), tmp_path / "ok", sandbox=SANDBOX)
    assert ok["correct"] == 4


# ------------------------------------------------------------- failing teachers (CLI)
def _cli():
    app = typer.Typer()
    app.command()(generate_command)
    return app, CliRunner()


def _synthetic_args(out: Path, url: str, *extra: str) -> list[str]:
    return ["--data", "synthetic", "--split", "train", "--limit", "4", "--out", str(out),
            "--local", "--model", "scripted-teacher", "--base-url", url, *extra]


def test_cli_refuses_a_server_that_is_down(tmp_path):
    with TeacherServer(lambda e, b: "ans = 1") as srv:
        url = srv.url  # the server is stopped when the block ends: its port refuses
    app, runner = _cli()
    t0 = time.perf_counter()
    res = runner.invoke(app, _synthetic_args(tmp_path / "out", url))
    assert res.exit_code == 2, res.output
    assert f"{url}/models" in res.stderr and "ConnectionRefusedError" in res.stderr
    assert time.perf_counter() - t0 < 10  # no per-row retries
    assert not list((tmp_path / "out").glob("rationales/*.parquet"))


def test_cli_stops_early_when_every_request_fails_the_same_way(tmp_path):
    """A server that answers 422 to every request (an unsupported field): the run stops after
    stop_after_failures rows, prints the error kinds and exits 1."""
    app, runner = _cli()
    (tmp_path / "gen.yaml").write_text("stop_after_failures: 3\nbatch_size: 2\n"
                                       "openai: {max_retries: 2, backoff_s: 0.01, max_concurrency: 1}\n")
    with TeacherServer(lambda e, b: "ans = 1", fail_first=10**6, fail_status=422) as srv:
        res = runner.invoke(app, _synthetic_args(tmp_path / "out", srv.url, "--limit", "30",
                                                 "--config", str(tmp_path / "gen.yaml")))
        sent, checks = srv.statuses.count(422), srv.models_requests
    assert res.exit_code == 1, res.output
    assert (checks, sent) == (1, 3)  # one check; the engine stopped sending after three failures
    assert "stopped early: the last 4 rows failed with the same error (HTTP 422" in res.stderr
    assert "generation error: 4 x HTTP 422" in res.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["generated"] == 4 and summary["generation_errors"] == {"HTTP 422": 4}


def test_cli_exits_nonzero_when_nothing_was_generated(tmp_path):
    """Fewer failures than stop_after_failures, but not one completion: exit 1, the kinds
    printed; the same run with a working teacher exits 0."""
    app, runner = _cli()
    with TeacherServer(lambda e, b: "ans = 1", fail_first=10**6, fail_status=500) as srv:
        cfg = tmp_path / "gen.yaml"
        cfg.write_text("openai: {max_retries: 1, backoff_s: 0.01}\n")
        res = runner.invoke(app, _synthetic_args(tmp_path / "out", srv.url, "--config", str(cfg),
                                                 "--json"))
    assert res.exit_code == 1, res.output
    assert "no completion was made for any of the 4 rows" in res.stderr
    assert "HTTP 500 x4" in res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["generation_errors"] == {"HTTP 500": 4}
    with TeacherServer(lambda e, b: "```python\nans = 1\n```") as srv:
        again = runner.invoke(app, _synthetic_args(tmp_path / "out", srv.url, "--config", str(cfg)))
    assert again.exit_code == 0, again.output
    assert "generation error" not in again.stdout


# ----------------------------------------------------------- a reused --out (fingerprint)
def test_cli_refuses_an_out_folder_made_for_other_problems_or_settings(tmp_path):
    app, runner = _cli()
    out = tmp_path / "out"
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"question": p["question"], "answer": p["answer"]}) + "\n"
                             for p in PROBLEMS[:4]))
    (tmp_path / "tol.yaml").write_text("rel_tol: 0.001\n")
    with TeacherServer(lambda e, b: "```python\nans = 1\n```") as srv:
        first = runner.invoke(app, _synthetic_args(out, srv.url))
        assert first.exit_code == 0, first.output
        same = runner.invoke(app, _synthetic_args(out, srv.url, "--json"))
        assert same.exit_code == 0 and json.loads(same.stdout.strip().splitlines()[-1])["reused"] == 4
        cases = {
            "split": (["--split", "test"], "problems: synthetic:train, first 4: 4 problems "),
            "limit": (["--limit", "5"], "4 problems (digest"),
            "dataset": (["--data", str(other)], "another dataset, split or --limit"),
            "samples": (["--samples", "2"], "samples: 1 there, 2 now"),
            "tolerance": (["--config", str(tmp_path / "tol.yaml")], "rel_tol: 0.0001 there, 0.001 now"),
        }
        asked = len(srv.requests)
        for name, (extra, message) in cases.items():
            res = runner.invoke(app, _synthetic_args(out, srv.url, *extra))
            assert res.exit_code == 2, (name, res.output)
            if name == "split":
                assert "synthetic:test, first 4: 4 (digest" in res.stderr
            assert "holds rows generated with another configuration" in res.stderr, name
            assert message in res.stderr, (name, res.stderr)
        assert len(srv.requests) == asked  # nothing was generated into the folder
    stage = json.loads((out / "stage.json").read_text())
    assert stage["problems"] == "synthetic:train, first 4" and stage["fingerprint"]["problems"]["count"] == 4


def test_refuses_other_sandbox_limits_but_not_another_pool_size(tmp_path):
    problems = PROBLEMS[:3]
    with TeacherServer(ScriptedTeacher(problems)) as srv:
        cfg = _config(srv.url)
        generate_dataset(problems, cfg, tmp_path / "out", sandbox=SANDBOX, local=True)
        again = generate_dataset(problems, cfg, tmp_path / "out", local=True,
                                 sandbox=SANDBOX.model_copy(update={"workers": 2}))
        assert again["reused"] == 3
        with pytest.raises(StageMismatchError, match=r"sandbox.timeout_s: 1.0 there, 3.0 now"):
            generate_dataset(problems, cfg, tmp_path / "out", local=True,
                             sandbox=SANDBOX.model_copy(update={"timeout_s": 3.0}))
        with pytest.raises(StageMismatchError, match=r"sandbox.memory_mb: 512 there, 256 now"):
            generate_dataset(problems, cfg, tmp_path / "out", local=True,
                             sandbox=SANDBOX.model_copy(update={"memory_mb": 256}))
        # a strategy whose verdicts do not run programs ignores the sandbox
        cot = _config(srv.url, strategy="cot")
        generate_dataset(problems, cot, tmp_path / "cot", local=True, sandbox=SANDBOX)
        generate_dataset(problems, cot, tmp_path / "cot", local=True,
                         sandbox=SANDBOX.model_copy(update={"timeout_s": 3.0}))
