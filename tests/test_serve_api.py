"""Serving without Ray: request checks, the solver (scripted outputs, the real sandbox), which
student a path names, the Serve options and the strict Serve config check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from distill.configbase import ConfigError
from distill.evaluate.config import InferenceConfig
from serve import api
from serve.config import ServeConfig
from serve.schema_check import check_serve_config, check_serve_file
from serve.solver import SolveItem, SolveParams, Solver, StudentSpec, resolve_student

REPO = Path(__file__).resolve().parents[1]
CFG = ServeConfig()


# ------------------------------------------------------------------------------ bad input
def _refused(fn, *args) -> api.ApiError:
    with pytest.raises(api.ApiError) as e:
        fn(*args)
    body = api.error_body(e.value)
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in body["error"]["message"]
    return e.value


JSON = "application/json"


@pytest.mark.parametrize("body, ctype, status, code", [
    (b"{not json", JSON, 400, "invalid_json"),
    (b"", JSON, 400, "invalid_json"),
    (b'{"question": "x"}', "text/plain", 415, "unsupported_media_type"),
    (b'{"question": "x"}', None, 415, "unsupported_media_type"),
    (b'{"question": "x"}', "application/json; charset=latin-1", 415, "unsupported_media_type"),
    (b'{"question": "\xff\xfe"}', JSON, 400, "invalid_utf8"),
    (b"[" * 100000 + b"]" * 100000, JSON, 413, "body_too_large"),
    (b"[" * 50000 + b"]" * 50000, JSON, 400, "invalid_json"),  # nested too deeply
])
def test_bodies_that_are_not_json_objects(body, ctype, status, code) -> None:
    err = _refused(api.read_json, body, ctype, 150_000)
    assert (err.status, err.code) == (status, code)


def test_a_utf8_charset_is_accepted() -> None:
    assert api.read_json('{"q": "三"}'.encode(), "application/json; charset=UTF-8", 1000) == {"q": "三"}


@pytest.mark.parametrize("data, status, param", [
    ([1, 2], 400, None),                                         # not an object
    ({}, 400, "question"),                                       # missing question
    ({"question": 5}, 400, "question"),                          # not a string
    ({"question": None}, 400, "question"),
    ({"question": "   "}, 400, "question"),                      # empty
    ({"question": "x" * 4097}, 400, "question"),                 # over the limit
    ({"question": "a\x00b"}, 400, "question"),
    ({"question": "2+2?", "num_samples": 0}, 400, "num_samples"),
    ({"question": "2+2?", "num_samples": 17}, 400, "num_samples"),
    ({"question": "2+2?", "num_samples": "3"}, 400, "num_samples"),
    ({"question": "2+2?", "lang": "fr"}, 400, "lang"),
    ({"question": "2+2?", "qestion": "typo"}, 400, "qestion"),   # unknown field
    ({"question": "2+2?", "model": "nope"}, 404, "model"),       # unknown model
])
def test_solve_requests_refused(data, status, param) -> None:
    def handle():
        req = api.parse(api.SolveRequest, data)
        api.pick_model(req.model, ["m"])
        api.solve_items(req, CFG)
    err = _refused(handle)
    assert (err.status, err.param) == (status, param)


@pytest.mark.parametrize("data, param", [
    ({"questions": []}, "questions"),
    ({"questions": ["ok"] * 257}, "questions"),
    ({"questions": ["ok", ""]}, "questions.1"),
    ({"questions": ["ok", 3]}, "questions.1"),
    ({"questions": "one string"}, "questions"),
])
def test_batch_requests_refused(data, param) -> None:
    err = _refused(lambda: api.solve_items(api.parse(api.BatchRequest, data), CFG))
    assert (err.status, err.param) == (400, param)


def test_model_is_required_only_when_several_are_served() -> None:
    assert api.pick_model(None, ["only"]) == "only"
    err = _refused(api.pick_model, None, ["a", "b"])
    assert (err.status, err.param) == (400, "model")


def test_openai_requests() -> None:
    chat = api.parse(api.ChatRequest, {
        "model": "m", "n": 3, "temperature": 0.5, "top_p": 0.9, "seed": 4, "max_tokens": 20,
        "stop": ["\n\n"], "user": "ignored", "messages": [
            {"role": "system", "content": "You solve math."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "..."},
            {"role": "user", "content": [{"type": "text", "text": "Tom has 3 apples."}]}]})
    item = api.chat_item(chat, CFG)
    assert item.question == "Tom has 3 apples."
    assert item.params == SolveParams(num_samples=3, temperature=0.5, top_p=0.9, seed=4,
                                      max_new_tokens=20, stop=("\n\n",), count_tokens=True)
    for bad, param in [({"messages": [{"role": "system", "content": "x"}]}, "messages"),
                       ({"messages": [{"role": "user", "content": "x"}], "stream": True}, "stream"),
                       ({"messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
                       ({"messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
                       ({"messages": "hi"}, "messages")]:
        err = _refused(lambda: api.chat_item(api.parse(api.ChatRequest, bad), CFG))
        assert (err.status, err.param) == (400, param), bad
    comp = api.parse(api.CompletionRequest, {"prompt": ["a 1", "b 2"], "max_tokens": 5})
    assert [i.question for i in api.completion_items(comp, CFG)] == ["a 1", "b 2"]


def test_overload_and_deadline_statuses_say_so() -> None:
    assert api.ApiError(503, "busy").type == "overloaded_error"
    assert api.ApiError(504, "late").type == "timeout_error"
    assert api.ApiError(400, "bad").type == "invalid_request_error"


# ------------------------------------------------------------------------------ the solver
def _spec(target: str, **kw) -> StudentSpec:
    return StudentSpec(name="m", checkpoint="/nonexistent", target=target,
                       inference=InferenceConfig(max_new_tokens=16).model_dump(), **kw)


def _scripted(outputs: dict[str, list[str]], calls: list | None = None):
    """A stand-in for generate(): the listed outputs per source (cycled to num_samples)."""
    def generate(student, sources, config, grammars=None):
        if calls is not None:
            calls.append((list(sources), config))
        k = config.num_samples
        return [[outputs[s][i % len(outputs[s])] for i in range(k)] for s in sources]
    return generate


Q1 = "Tom has 3 apples and buys 4 more. How many apples does he have?"
Q1_MASKED = "Tom has N0 apples and buys N1 more. How many apples does he have?"
Q2 = "A box holds 12 pens. How many pens are in 5 boxes?"
Q2_MASKED = "A box holds N0 pens. How many pens are in N1 boxes?"


def test_an_equation_student_answers_with_the_question_numbers() -> None:
    calls: list = []
    solver = Solver(_spec("equation_prefix"), generate=_scripted(
        {Q1_MASKED: ["+ N0 N1"], Q2_MASKED: ["* N0 N9"]}, calls))
    r1, bad, r2 = solver.solve([SolveItem(Q1), SolveItem("   "), SolveItem(Q2)])
    assert (r1["answer"], r1["kind"], r1["equation"], r1["quantities"]) == ("7", "equation", "3 + 4",
                                                                            ["3", "4"])
    assert r1["rationale"] == "+ N0 N1" and r1["error"] is None and r1["votes"] is None
    assert r1["prompt_tokens"] is None  # counted only for the OpenAI routes' usage
    assert (bad["answer"], bad["error"]) == (None, "bad_question")
    assert (r2["answer"], r2["error"], r2["equation"]) == (None, "unparsable", None)  # N9: none
    assert len(calls) == 1 and calls[0][0] == [Q1_MASKED, Q2_MASKED]  # one batch, greedy
    assert calls[0][1].num_samples == 1


def test_samples_are_voted_and_requests_with_other_params_decode_apart() -> None:
    calls: list = []
    solver = Solver(_spec("equation_prefix"), generate=_scripted(
        {Q1_MASKED: ["+ N0 N1", "- N1 N0", "+ N1 N0", "junk"]}, calls))
    voted, greedy, seeded = solver.solve([
        SolveItem(Q1, params=SolveParams(num_samples=4)), SolveItem(Q1),
        SolveItem(Q1, params=SolveParams(num_samples=4, seed=9, temperature=1.2))])
    assert voted["answer"] == "7" and voted["votes"] == {"7": 2, "1": 1}
    assert voted["rationale"] == "+ N0 N1" and len(voted["samples"]) == 4
    assert greedy["votes"] is None and greedy["answer"] == "7"
    assert [c[1].num_samples for c in calls] == [4, 1, 4]
    assert calls[2][1].seed == 9 and calls[2][1].temperature == 1.2
    # temperature 0 is greedy: one decode, copied to the samples asked for
    calls.clear()
    [copies] = solver.solve([SolveItem(Q1, params=SolveParams(num_samples=3, temperature=0))])
    assert calls[0][1].num_samples == 1 and copies["votes"] == {"7": 3}


def test_a_student_with_a_beam_decodes_by_it_unless_samples_are_asked_for() -> None:
    calls: list = []
    spec = StudentSpec(name="m", checkpoint="/nonexistent", target="equation_prefix",
                       inference=InferenceConfig(max_new_tokens=16, num_beams=5).model_dump())
    solver = Solver(spec, generate=_scripted({Q1_MASKED: ["+ N0 N1", "+ N1 N0"]}, calls))
    solver.solve([SolveItem(Q1), SolveItem(Q1, params=SolveParams(num_samples=4)),
                  SolveItem(Q1, params=SolveParams(num_samples=2, temperature=0))])
    assert [(c[1].num_samples, c[1].num_beams) for c in calls] == [(1, 5), (4, 1), (1, 1)]


def test_stop_cuts_the_output_before_it_is_read() -> None:
    solver = Solver(_spec("cot"), generate=_scripted(
        {Q1: ["3 + 4 = 7. The answer is 7.\n\nNext question: 9"]}))
    [r] = solver.solve([SolveItem(Q1, params=SolveParams(stop=("\n\n",), count_tokens=True))])
    assert r["answer"] == "7" and r["rationale"] == "3 + 4 = 7. The answer is 7." and r["kind"] == "cot"
    chat = api.chat_response("m", r)
    assert chat["choices"][0]["message"]["content"] == (
        "3 + 4 = 7. The answer is 7.\nThe answer is 7.")
    assert chat["usage"]["total_tokens"] == chat["usage"]["prompt_tokens"] + \
        chat["usage"]["completion_tokens"] > 0


def test_program_students_run_in_the_sandbox_and_hostile_programs_are_contained() -> None:
    programs = {Q1: ["ans = 3 + 4"], Q2: ["import os\nans = os.getuid()"],
                "How long is 1 forever loop?": ["while True:\n    pass"]}
    solver = Solver(_spec("pot"), generate=_scripted(programs),
                    sandbox={"timeout_s": 1.0, "workers": 1, "warmup": False})
    try:
        ok, forbidden, loop, after = solver.solve(
            [SolveItem(q) for q in (Q1, Q2, "How long is 1 forever loop?", Q1)])
        assert (ok["answer"], ok["kind"], ok["program"]) == ("7", "program", "ans = 3 + 4")
        assert (forbidden["answer"], forbidden["error"]) == (None, "forbidden")
        assert (loop["answer"], loop["error"]) == (None, "timeout")
        assert after["answer"] == "7"
        assert solver.healthy()
    finally:
        solver.close()


def test_kpdd_students_show_their_key_points() -> None:
    from distill.sft.core import keypoints_source, solve_source

    points = "Core question: how many apples\nProblem-solving information: 3 and 4 more"
    solver = Solver(_spec("kpdd"), generate=_scripted(
        {keypoints_source(Q1): [points], solve_source(Q1, points): ["ans = 3 + 4"]}),
        execute=lambda codes: [type("R", (), {"answer": "7", "error": None})() for _ in codes])
    [r] = solver.solve([SolveItem(Q1)])
    assert r["answer"] == "7" and r["rationale"] == f"{points}\nans = 3 + 4"
    assert r["program"] == "ans = 3 + 4"


# ------------------------------------------------------------------ which student a path names
def _checkpoint(folder: Path, target: str | None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer_config.json").write_text("{}")
    if target:
        (folder / "trainer_state.json").write_text(json.dumps({"epoch": 1, "target": target}))
    return folder


def test_resolve_student_from_a_run_or_a_checkpoint(tmp_path: Path) -> None:
    from distill.config import dump_config, load_config

    run = tmp_path / "run"
    ckpt = _checkpoint(run / "train" / "student" / "epoch_0002", None)
    cfg = load_config(REPO / "configs" / "quickstart.yaml")
    dump_config(cfg, run / "config.yaml")
    (run / "manifest.json").write_text("{}")
    (run / "train" / "result.json").write_text(json.dumps(
        {"checkpoint_dir": "train/student/epoch_0002"}))
    spec = resolve_student(run)
    assert (spec.name, spec.target, Path(spec.checkpoint)) == ("quickstart", "equation_prefix", ckpt)
    assert spec.inference["max_new_tokens"] == 48 and spec.inference["num_samples"] == 1
    assert resolve_student(f"mine={run}").name == "mine"
    assert resolve_student(ckpt).target == "equation_prefix"  # from the run it sits in
    bare = _checkpoint(tmp_path / "bare", "pot")
    assert (resolve_student(bare).target, resolve_student(bare).name) == ("pot", "bare")
    with pytest.raises(ConfigError, match="does not record its training target"):
        resolve_student(_checkpoint(tmp_path / "old", None))
    with pytest.raises(ConfigError, match="no such run directory"):
        resolve_student(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="neither a run directory"):
        resolve_student(tmp_path / "empty")
    with pytest.raises(ConfigError, match="cannot be evaluated or served"):
        resolve_student(_checkpoint(tmp_path / "odd", "masked_equation"))


# ------------------------------------------------------------------------------ Serve options
def test_serve_config_becomes_serve_options() -> None:
    cfg = ServeConfig(replicas="auto", num_cpus=2, num_gpus=0.5, max_batch_size=8,
                      max_ongoing_requests=24, max_queued_requests=99,
                      autoscaling={"min_replicas": 1, "max_replicas": 5,
                                   "target_ongoing_requests": 3})
    opts = cfg.student_deployment_options("student-0")
    assert opts["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 0.5}
    assert (opts["max_ongoing_requests"], opts["max_queued_requests"]) == (24, 99)
    assert opts["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 5,
                                          "target_ongoing_requests": 3}
    assert "num_replicas" not in opts
    fixed = ServeConfig(replicas=3).student_deployment_options("s")
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert ServeConfig(host="0.0.0.0", port=9001, route_prefix="/math").url() == \
        "http://127.0.0.1:9001/math"
    with pytest.raises(ValueError, match="batches never fill"):
        ServeConfig(max_batch_size=64, max_ongoing_requests=8)
    with pytest.raises(ValueError, match="extra"):
        ServeConfig(target_ongoing_request=3)


def test_the_shipped_serve_config_file_is_sound_and_typos_are_caught() -> None:
    assert check_serve_file(REPO / "serve" / "config.yaml") == []
    data = yaml.safe_load((REPO / "serve" / "config.yaml").read_text())
    app = data["applications"][0]
    app["deployments"] = [{"name": "student-0", "autoscaling_config": {
        "min_replicas": 1, "target_ongoing_request": 2}, "ray_actor_options": {"num_cpu": 1}}]
    app["args"]["serve"]["max_batch"] = 4
    app["rout_prefix"] = "/x"
    data["http_options"]["prot"] = 1
    problems = "\n".join(check_serve_config(data))
    for wrong, right in [("target_ongoing_request", "target_ongoing_requests"),
                         ("num_cpu", "num_cpus"), ("rout_prefix", "route_prefix"),
                         ("prot", "port")]:
        assert f"unknown key {wrong!r} (did you mean {right!r}?)" in problems, problems
    assert "args.serve.max_batch" in problems


# ------------------------------------------------------------------ the vLLM route (GPU only)
def test_the_vllm_route_config_is_valid_for_causal_students_and_refuses_t5(tmp_path: Path) -> None:
    from serve.llm_route import llm_config_for

    causal = _checkpoint(tmp_path / "qwen", "cot")
    (causal / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    spec = StudentSpec(name="q", checkpoint=str(causal), target="cot",
                       inference=InferenceConfig(max_new_tokens=64,
                                                 max_source_length=192).model_dump())
    kwargs = llm_config_for(spec, ServeConfig(replicas="auto", max_ongoing_requests=48), "L4")
    assert kwargs["model_loading_config"] == {"model_id": "q", "model_source": str(causal)}
    assert kwargs["engine_kwargs"]["max_model_len"] == 256
    assert kwargs["deployment_config"]["autoscaling_config"]["max_replicas"] == 2
    # Ray's own model accepts it (the class ray.serve.llm re-exports; importable without vLLM
    # in the pinned Ray 2.60: if it moves, this fails rather than skips)
    from ray.llm._internal.serve.core.configs.llm_config import LLMConfig

    validated = LLMConfig(**kwargs)
    assert validated.model_id == "q" and validated.accelerator_type == "L4"
    t5 = _checkpoint(tmp_path / "t5", "equation_prefix")
    (t5 / "config.json").write_text(json.dumps({"model_type": "t5", "is_encoder_decoder": True}))
    with pytest.raises(ConfigError, match="vLLM cannot serve"):
        llm_config_for(StudentSpec(name="t", checkpoint=str(t5), target="equation_prefix"),
                       ServeConfig())


@pytest.mark.gpu
def test_the_vllm_route_builds_on_a_gpu_machine(tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("vllm")  # the gpu extra, installed on GPU images only
    from serve.llm_route import build_llm_app

    causal = _checkpoint(tmp_path / "qwen", "cot")
    (causal / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    assert build_llm_app({"runs": [f"q={causal}"]}) is not None


# ------------------------------------------------------------------ the gateway's forwarding
class _Response:
    """Stands in for a DeploymentResponse: awaitable, cancellable."""

    def __init__(self, outcome, delay: float = 0.0):
        self.outcome, self.delay, self.cancelled = outcome, delay, False

    def __await__(self):
        return self._wait().__await__()

    async def _wait(self):
        import asyncio

        await asyncio.sleep(self.delay)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def cancel(self) -> None:
        self.cancelled = True


class _Handle:
    """Stands in for a student's DeploymentHandle: ``solve_many.remote(items)`` gives the
    next outcome (a list of results, or an exception); ``sent`` holds each call's items."""

    def __init__(self, outcomes):
        self.outcomes, self.sent = list(outcomes), []
        self.solve_many = self

    def remote(self, items):
        self.sent.append(list(items))
        return self.outcomes.pop(0)


def _forward(handle: _Handle, items, timeout_s: float = 5.0):
    import asyncio
    import time
    from types import SimpleNamespace

    from serve.deployments import Gateway

    from types import MethodType

    gateway = SimpleNamespace(students={"m": handle}, _forwarders={},
                              config=ServeConfig(request_timeout_s=timeout_s))
    gateway._forwarder = MethodType(Gateway.func_or_class._forwarder, gateway)
    ask = Gateway.func_or_class._ask
    return asyncio.run(ask(gateway, "m", items, time.monotonic() + timeout_s))


def test_the_gateway_maps_overload_deadlines_and_dead_replicas() -> None:
    from ray.exceptions import ActorDiedError
    from ray.serve.exceptions import BackPressureError

    item = SolveItem(Q1, params=SolveParams(num_samples=2, stop=("\n",)))
    ok = {"answer": "7"}
    handle = _Handle([_Response([ok, ok])])
    assert _forward(handle, [item, item]) == [ok, ok]
    assert len(handle.sent) == 1  # one call carries both questions
    assert handle.sent[0][0].params.stop == ("\n",) and handle.sent[0][0].question == Q1
    # a full queue: 503, said once
    with pytest.raises(api.ApiError) as e:
        _forward(_Handle([_Response(BackPressureError(num_queued_requests=8,
                                                      max_queued_requests=8))]), [item])
    assert (e.value.status, e.value.code) == (503, "overloaded")
    # past the deadline: 504, and the replica's work is cancelled
    slow = _Response([ok], delay=5.0)
    with pytest.raises(api.ApiError) as e:
        _forward(_Handle([slow]), [item], timeout_s=0.3)
    assert e.value.status == 504 and slow.cancelled
    # a replica that died mid-request: asked again (another replica, or its replacement)
    handle = _Handle([_Response(ActorDiedError()), _Response([ok])])
    assert _forward(handle, [item]) == [ok] and len(handle.sent) == 2
    # ... but never past the deadline
    with pytest.raises(api.ApiError) as e:
        _forward(_Handle([_Response(ActorDiedError())] * 50), [item], timeout_s=0.8)
    assert e.value.status == 504


def test_serve_stops_only_the_ray_it_started() -> None:
    from serve.cli import starts_local_ray

    assert starts_local_ray(None, {}) and starts_local_ray("local", {})
    assert not starts_local_ray("auto", {})
    assert not starts_local_ray("ray://head:10001", {})
    assert not starts_local_ray(None, {"RAY_ADDRESS": "127.0.0.1:6379"})


def test_the_serving_section_comes_from_the_file_or_the_run(tmp_path: Path) -> None:
    from distill.config import dump_config, load_config
    from serve.app import serve_config_for

    run = tmp_path / "run"
    cfg = load_config(REPO / "configs" / "quickstart.yaml")
    cfg.serve = ServeConfig(port=9100, max_batch_size=4)
    dump_config(cfg, run / "config.yaml")
    (run / "manifest.json").write_text("{}")
    assert serve_config_for([f"m={run}"]).port == 9100  # the run's own section
    raw = yaml.safe_load((run / "config.yaml").read_text())
    del raw["serve"]  # a run written before serving existed: the defaults
    (run / "config.yaml").write_text(yaml.safe_dump(raw))
    assert serve_config_for([str(run)]) == ServeConfig()
    only = tmp_path / "serve.yaml"
    only.write_text("replicas: auto\nport: 9200\n")  # a file with the section's keys only
    assert serve_config_for([str(run)], only).replicas == "auto"
    only.write_text("serve: {port: 9300}\n")
    assert serve_config_for([str(run)], only).port == 9300
    only.write_text("prot: 1\n")
    with pytest.raises(ConfigError, match="prot"):
        serve_config_for([str(run)], only)


def test_students_served_on_a_cluster_must_isolate_their_programs() -> None:
    """`mathdistill serve` joining a cluster, and a Serve config with ``on_a_cluster`` (the
    RayService), make each program student's sandbox refuse to run unisolated; an explicit
    isolation (``none`` included) is left as the user wrote it."""
    from serve.app import AppArgs, on_a_cluster

    specs = [StudentSpec(name="auto", checkpoint="c", target="pot", sandbox={"timeout_s": 2.0}),
             StudentSpec(name="unset", checkpoint="c", target="pot"),
             StudentSpec(name="none", checkpoint="c", target="pot",
                         sandbox={"isolation": "none"})]
    isolated, config = on_a_cluster(specs, ServeConfig())
    boxes = {s.name: s.sandbox for s in isolated}
    assert boxes["auto"]["require_namespaces"] and boxes["auto"]["timeout_s"] == 2.0
    assert boxes["unset"]["require_namespaces"]
    assert (boxes["none"]["isolation"], boxes["none"]["require_namespaces"]) == ("none", False)
    assert config.sandbox is None and specs[0].sandbox == {"timeout_s": 2.0}  # copies
    _, config = on_a_cluster(specs, ServeConfig(sandbox={"workers": 1}))
    assert config.sandbox.require_namespaces and config.sandbox.workers == 1
    rayservice = yaml.safe_load((Path(__file__).resolve().parents[1] / "cluster" / "kuberay"
                                 / "rayservice.yaml").read_text())
    app = yaml.safe_load(rayservice["spec"]["serveConfigV2"])["applications"][0]
    assert AppArgs.model_validate(app["args"]).on_a_cluster
