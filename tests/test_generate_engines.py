"""distill.generate.engines: ``hf`` on tiny random models built here (decoder-only and
encoder-decoder, chat and base prompts), ``openai`` against a real OpenAI-compatible HTTP
server on loopback (request and response shapes, retries on 429 / 5xx / dropped connections,
no retry on 401, a slow server that times out, bounded concurrency, the API key never shown),
and ``vllm``: its processor built on CPU and its stages checked, the CPU stages run on our rows,
the round plumbing driven by hand; the GPU run itself skips here."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from distill.generate import GenerateConfig
from distill.generate.engines import (
    GenRequest,
    UnknownEngineError,
    build_engine,
    get_engine_class,
    register_engine,
    truncate_at_stop,
)
from distill.generate.templates import Prompt, load_template
from distill.generate.testing import TeacherServer, build_tiny_lm

QUESTION = "Tom has 3 boxes with 4 pens in each box. How many pens does Tom have?"


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


def _prompt(template="cot", question=QUESTION, demos=1) -> Prompt:
    return load_template(template).render({"question": question}, num_demos=demos)


# ------------------------------------------------------------------------------ registry
def test_registry():
    assert get_engine_class("hf").__name__ == "HFEngine"
    with pytest.raises(UnknownEngineError, match="valid names: hf, openai, vllm"):
        get_engine_class("tgi")
    with pytest.raises(ValueError, match="already registered"):
        register_engine("hf")(type("Again", (), {}))
    with pytest.raises(ValueError, match="whole Ray Dataset"):
        build_engine(GenerateConfig(engine="vllm", model="m"))


def test_truncate_at_stop():
    assert truncate_at_stop("ans = 1\nProblem: next", ["\nProblem:"]) == ("ans = 1", True)
    assert truncate_at_stop("abc", ["x", "\n\n"]) == ("abc", False)
    assert truncate_at_stop("a\n\nb\nProblem:", ["\nProblem:", "\n\n"]) == ("a", True)


# ------------------------------------------------------------------------------------ hf
def test_hf_engine_chat_and_base(tiny_lm):
    cfg = GenerateConfig(engine="hf", model=tiny_lm, strategy="cot",
                         sampling={"max_tokens": 12}, hf={"batch_size": 2})
    engine = build_engine(cfg)
    assert engine.chat  # the tokenizer has a chat template
    prompts = [_prompt(question=q) for q in (QUESTION, "Ann has 5 apples. She eats 2. How many are left?",
                                             "A farm sells 1,200 eggs a day. How many in 2 days?")]
    out = engine.generate([GenRequest(p, i) for i, p in enumerate(prompts)], cfg.sampling)
    assert [r.error for r in out] == [None] * 3
    assert all(0 < r.tokens_out <= 12 and r.tokens_in > 100 for r in out)
    assert json.loads(out[0].sent)[-1] == {"role": "user", "content": f"Problem: {QUESTION}"}
    again = engine.generate([GenRequest(prompts[0], 0)], cfg.sampling)[0]
    assert again.text == out[0].text  # greedy
    base = build_engine(cfg.model_copy(update={"chat": False}))
    b = base.generate([GenRequest(prompts[0], 0)], cfg.sampling)[0]
    assert b.sent == prompts[0].text and b.sent.endswith("Solution:") and b.error is None
    sampled = cfg.model_copy(update={"sampling": cfg.sampling.model_copy(update={"temperature": 1.0})})
    s1 = engine.generate([GenRequest(prompts[0], 7), GenRequest(prompts[1], 8)], sampled.sampling)
    s2 = engine.generate([GenRequest(prompts[0], 7), GenRequest(prompts[1], 8)], sampled.sampling)
    assert [r.text for r in s1] == [r.text for r in s2]  # same seeds, same batching


def test_hf_engine_refuses_chat_without_template(tmp_path):
    path = build_tiny_lm(tmp_path / "m", chat_template=False)
    cfg = GenerateConfig(engine="hf", model=path, sampling={"max_tokens": 4})
    assert build_engine(cfg).chat is False  # auto: base prompts
    with pytest.raises(ValueError, match="no chat template"):
        build_engine(cfg.model_copy(update={"chat": True}))


def test_hf_engine_encoder_decoder(tmp_path):
    from transformers import T5Config, T5ForConditionalGeneration

    from distill.train.students import train_tokenizer

    tok = train_tokenizer([QUESTION, "The answer is: 12"] * 20, 400, append_eos=True, min_frequency=1)
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=len(tok), d_model=32, d_kv=8, num_heads=2, d_ff=64, num_layers=1,
        num_decoder_layers=1, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    model.save_pretrained(tmp_path / "t5")
    tok.save_pretrained(tmp_path / "t5")
    cfg = GenerateConfig(engine="hf", model=str(tmp_path / "t5"), chat=False, sampling={"max_tokens": 5})
    engine = build_engine(cfg)
    assert engine.encoder_decoder
    r = engine.generate([GenRequest(_prompt(demos=0), 0)], cfg.sampling)[0]
    assert r.error is None and 0 < r.tokens_out <= 5


# -------------------------------------------------------------------------------- openai
def _openai(url: str, **kw) -> GenerateConfig:
    o = {"base_url": url, "backoff_s": 0.05, "max_retries": 3, "timeout_s": 5.0, **kw.pop("openai", {})}
    sampling = {"max_tokens": 32, **kw.pop("sampling", {})}
    return GenerateConfig(engine="openai", model="teacher-7b", strategy="pot", openai=o,
                          sampling=sampling, **kw)


def test_openai_request_and_response_shapes():
    seen = []

    def responder(endpoint, body):
        seen.append(body)
        return "```python\nans = 3 * 4\n```"

    with TeacherServer(responder) as srv:
        cfg = _openai(srv.url, openai={"extra_body": {"top_k": 20}})
        engine = build_engine(cfg)
        r = engine.generate([GenRequest(_prompt("pot"), 1234)], cfg.sampling)[0]
        assert r.error is None and r.text == "```python\nans = 3 * 4\n```"
        assert r.finish_reason == "stop" and r.tokens_in > 0 and r.tokens_out == 7  # words
        endpoint, body = srv.requests[-1]
        assert endpoint == "chat"
        assert body["model"] == "teacher-7b" and body["seed"] == 1234 and body["n"] == 1
        assert body["max_tokens"] == 32 and body["temperature"] == 0.0 and body["top_k"] == 20
        assert body["messages"][0]["role"] == "system" and "stop" not in body
        assert body["messages"][-1]["content"] == f"Problem: {QUESTION}"
        base = build_engine(cfg.model_copy(update={"chat": False}))
        r = base.generate([GenRequest(_prompt("pot"), 5)], cfg.sampling)[0]
        endpoint, body = srv.requests[-1]
        assert endpoint == "completions" and r.text.startswith("```python")
        assert body["prompt"].endswith("Program:") and body["stop"] == ["\nProblem:"]


def test_openai_against_a_served_transformers_model(tiny_lm):
    """The server runs the tiny model through the hf engine: the HTTP round trip gives the
    same greedy text as calling the model directly."""
    hf_cfg = GenerateConfig(engine="hf", model=tiny_lm, sampling={"max_tokens": 10})
    direct = build_engine(hf_cfg).generate([GenRequest(_prompt(), 0)], hf_cfg.sampling)[0]
    with TeacherServer(model_dir=tiny_lm) as srv:
        cfg = _openai(srv.url, sampling={"max_tokens": 10})
        r = build_engine(cfg).generate([GenRequest(_prompt(), 0)], cfg.sampling)[0]
    assert r.error is None
    assert r.text == direct.text
    assert (r.tokens_in, r.tokens_out) == (direct.tokens_in, direct.tokens_out)


@pytest.mark.parametrize("faults,statuses", [
    (dict(fail_first=2, fail_status=503), [503, 503, 200]),
    (dict(fail_first=1, fail_status=500), [500, 200]),
    (dict(fail_first=1, fail_status=429, retry_after=0.3), [429, 200]),
    (dict(drop_first=2), [0, 0, 200]),
])
def test_openai_retries_transient_failures(faults, statuses):
    with TeacherServer(lambda e, b: "ans = 12", **faults) as srv:
        cfg = _openai(srv.url)
        t0 = time.perf_counter()
        r = build_engine(cfg).generate([GenRequest(_prompt("pot"), 0)], cfg.sampling)[0]
        took = time.perf_counter() - t0
        assert r.error is None and r.text == "ans = 12"
        assert srv.statuses == statuses
    if faults.get("retry_after"):
        assert took >= 0.3  # Retry-After honoured


def test_openai_gives_up_after_max_retries():
    with TeacherServer(lambda e, b: "x", fail_first=10, fail_status=503) as srv:
        cfg = _openai(srv.url, openai={"max_retries": 2})
        r = build_engine(cfg).generate([GenRequest(_prompt("pot"), 0)], cfg.sampling)[0]
        assert r.text is None and "HTTP 503" in r.error and "after 3 attempt(s)" in r.error
        assert srv.statuses == [503, 503, 503]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_openai_no_retry_on_401_and_key_never_shown(monkeypatch):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("TEACHER_KEY", secret)
    records = _Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    try:
        _check_401_and_key(secret)
    finally:
        root.removeHandler(records)
        root.setLevel(old_level)
    assert records.lines is not None and not any(secret in line for line in records.lines)
    monkeypatch.delenv("TEACHER_KEY")
    with TeacherServer(lambda e, b: "ans = 1", api_key=secret) as srv:  # unset variable: no header
        cfg = _openai(srv.url, openai={"api_key_env": "TEACHER_KEY"})
        r = build_engine(cfg).generate([GenRequest(_prompt("pot"), 0)], cfg.sampling)[0]
        assert "HTTP 401" in r.error


def _check_401_and_key(secret: str) -> None:
    with TeacherServer(lambda e, b: "ans = 1", api_key="another-key") as srv:
        cfg = _openai(srv.url, openai={"api_key_env": "TEACHER_KEY"})
        engine = build_engine(cfg)
        r = engine.generate([GenRequest(_prompt("pot"), 0)], cfg.sampling)[0]
        assert r.text is None and "HTTP 401" in r.error and "after 1 attempt(s)" in r.error
        assert srv.statuses == [401]
        assert secret not in r.error and secret not in repr(engine)
        assert secret not in cfg.model_dump_json()
    with TeacherServer(lambda e, b: "ans = 1", api_key=secret) as srv:
        r = build_engine(_openai(srv.url, openai={"api_key_env": "TEACHER_KEY"})).generate(
            [GenRequest(_prompt("pot"), 0)], cfg.sampling)[0]
        assert r.error is None and r.text == "ans = 1"


def test_openai_slow_server_times_out():
    with TeacherServer(lambda e, b: "ans = 1", delay_s=1.5) as srv:
        cfg = _openai(srv.url, openai={"timeout_s": 0.3, "max_retries": 1})
        t0 = time.perf_counter()
        r = build_engine(cfg).generate([GenRequest(_prompt("pot"), 0)], cfg.sampling)[0]
        took = time.perf_counter() - t0
        assert r.text is None and "timeout: no reply within 0.3 s" in r.error and "2 attempt(s)" in r.error
        assert took < 1.5  # gave up long before the server answered
        assert len(srv.requests) == 2


def test_openai_deadline_cuts_a_trickling_server():
    """A server that sends its reply a byte every 20 ms never trips the per-read timeout;
    the whole-attempt deadline cuts it off (and the attempt is retried)."""
    with TeacherServer(lambda e, b: "ans = 1", trickle_s=0.02) as srv:
        cfg = _openai(srv.url, openai={"timeout_s": 1.0, "deadline_s": 0.8, "max_retries": 1})
        t0 = time.perf_counter()
        r = build_engine(cfg).generate([GenRequest(_prompt("pot"), 0)], cfg.sampling)[0]
        took = time.perf_counter() - t0
    assert r.text is None and r.error.startswith("deadline: the reply took longer than 0.8 s")
    assert "after 2 attempt(s)" in r.error and len(srv.requests) == 2
    assert took < 3.0  # the reply alone takes ~6 s to trickle out


def test_openai_ssl_error_is_not_retried():
    """TLS to a plain-HTTP server fails the handshake: a TLS error, not a connection error,
    and retrying cannot fix it."""
    with TeacherServer(lambda e, b: "ans = 1") as srv:
        cfg = _openai(srv.url.replace("http://", "https://"), openai={"max_retries": 3})
        r = build_engine(cfg).generate([GenRequest(_prompt("pot"), 0)], cfg.sampling)[0]
    assert r.text is None and r.error.startswith("ssl error (") and "after 1 attempt(s)" in r.error


def test_openai_null_content_is_retried():
    replies = [None, "ans = 12"]

    def responder(endpoint, body):
        return replies.pop(0)

    with TeacherServer(responder) as srv:
        cfg = _openai(srv.url)
        r = build_engine(cfg).generate([GenRequest(_prompt("pot"), 0)], cfg.sampling)[0]
        assert r.error is None and r.text == "ans = 12" and srv.statuses == [200, 200]
    with TeacherServer(lambda e, b: None) as srv:
        cfg = _openai(srv.url, openai={"max_retries": 1})
        r = build_engine(cfg).generate([GenRequest(_prompt("pot"), 0)], cfg.sampling)[0]
    assert r.text is None and r.error.startswith("empty reply: the completion is null")
    assert "after 2 attempt(s)" in r.error


def test_openai_stop_strings_cut_and_beyond_four():
    """Four stop strings are sent (the API's limit); every one, the fifth included, is cut
    from the stored completion, also when a server echoes the one it stopped at."""
    def responder(endpoint, body):
        return "ans = 12\n<END5>tail" if body["seed"] == 5 else "ans = 7\nProblem: echoed"

    stops = ["<END2>", "<END3>", "<END4>", "<END5>"]
    with TeacherServer(responder) as srv:
        cfg = _openai(srv.url, chat=False, sampling={"stop": stops})
        engine = build_engine(cfg)
        out = engine.generate([GenRequest(_prompt("pot"), 5), GenRequest(_prompt("pot"), 6)],
                              cfg.sampling)
        assert srv.requests[0][1]["stop"] == ["\nProblem:", "<END2>", "<END3>", "<END4>"]
    assert [r.text for r in out] == ["ans = 12\n", "ans = 7"]
    assert [r.finish_reason for r in out] == ["stop", "stop"]


def test_openai_stops_sending_after_consecutive_identical_failures():
    with TeacherServer(lambda e, b: "x", fail_first=10**6, fail_status=422) as srv:
        cfg = _openai(srv.url, stop_after_failures=3, openai={"max_concurrency": 1})
        t0 = time.perf_counter()
        out = build_engine(cfg).generate([GenRequest(_prompt("pot"), i) for i in range(8)], cfg.sampling)
        assert srv.statuses == [422, 422, 422]  # the rest were never sent
    assert all(r.text is None and r.error.startswith("HTTP 422") for r in out)
    assert "not sent, the previous 3 requests failed this way" in out[3].error
    assert time.perf_counter() - t0 < 5


def test_openai_check_ready_names_the_url_and_what_failed(monkeypatch):
    from distill.generate.engines import TeacherUnavailableError
    from distill.generate.engines.openai import OpenAIEngine

    with TeacherServer(lambda e, b: "x") as srv:
        OpenAIEngine.check_ready(_openai(srv.url))
        assert srv.models_requests == 1
        url = srv.url
    t0 = time.perf_counter()
    with pytest.raises(TeacherUnavailableError, match=rf"{url}/models: connection error \(ConnectionRefusedError\)"):
        OpenAIEngine.check_ready(_openai(url))  # the server is gone
    assert time.perf_counter() - t0 < 2
    with TeacherServer(lambda e, b: "x", models_status=500) as srv:
        with pytest.raises(TeacherUnavailableError, match="models: HTTP 500"):
            OpenAIEngine.check_ready(_openai(srv.url))
        OpenAIEngine.check_ready(_openai(srv.url, openai={"check_server": False}))
    monkeypatch.setenv("TEACHER_KEY", "sk-wrong-key-0000")
    with TeacherServer(lambda e, b: "x", api_key="sk-right") as srv:
        with pytest.raises(TeacherUnavailableError, match=r"HTTP 401.*check the API key in \$TEACHER_KEY") as e:
            OpenAIEngine.check_ready(_openai(srv.url, openai={"api_key_env": "TEACHER_KEY"}))
        assert "sk-wrong-key-0000" not in str(e.value)
        with pytest.raises(TeacherUnavailableError, match=r"https://127.0.0.1:\d+/v1/models: ssl error"):
            OpenAIEngine.check_ready(_openai(srv.url.replace("http://", "https://")))


def test_openai_bad_requests_fail_at_once():
    with TeacherServer(lambda e, b: "ans = 1") as srv:
        cfg = _openai(srv.url.replace("/v1", "/v2"))  # a wrong route: 404, not retried
        r = build_engine(cfg).generate([GenRequest(_prompt("pot"), 0)], cfg.sampling)[0]
        assert "HTTP 404" in r.error and srv.statuses == [404]
    with TeacherServer(lambda e, b: 1 / 0) as srv:  # the server fails: 500, retried, then given up
        cfg = _openai(srv.url, openai={"max_retries": 1})
        r = build_engine(cfg).generate([GenRequest(_prompt("pot"), 0)], cfg.sampling)[0]
        assert "HTTP 500" in r.error and srv.statuses == [500, 500]


def test_openai_bounded_concurrency():
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def responder(endpoint, body):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        return f"ans = {body['seed']}"

    with TeacherServer(responder) as srv:
        cfg = _openai(srv.url, openai={"max_concurrency": 3})
        out = build_engine(cfg).generate([GenRequest(_prompt("pot"), i) for i in range(9)], cfg.sampling)
    assert [r.text for r in out] == [f"ans = {i}" for i in range(9)]  # in request order
    assert 2 <= state["max"] <= 3


# ---------------------------------------------------------------------------------- vllm
def _vllm_config(model: str, **kw) -> GenerateConfig:
    vllm = {"tensor_parallel_size": 2, "concurrency": 3, "batch_size": 16, "max_model_len": 2048,
            **kw.pop("vllm", {})}
    return GenerateConfig(engine="vllm", model=model, vllm=vllm, **kw)


def test_vllm_processor_config():
    import ray.data.llm  # noqa: F401  (installed with ray[data])
    from distill.generate.engines.vllm import processor_config

    pc = processor_config(_vllm_config("Qwen/Qwen2.5-7B-Instruct",
                                       vllm={"engine_kwargs": {"enable_prefix_caching": True}}), chat=True)
    assert pc.model_source == "Qwen/Qwen2.5-7B-Instruct"
    assert pc.engine_kwargs["enable_prefix_caching"] is True
    assert pc.should_continue_on_error is True
    base = processor_config(_vllm_config("m"), chat=False)
    assert base.engine_kwargs["tensor_parallel_size"] == 2 and base.engine_kwargs["max_model_len"] == 2048
    assert base.batch_size == 16 and base.chat_template_stage is False


def test_vllm_processor_config_takes_the_stage_resources():
    """ray.resources.generate describes one engine replica: its GPUs and CPUs reach the
    processor's placement group (one bundle per TP x PP worker), its concurrency the replica
    count, and vllm.accelerator_type the accelerator type."""
    import ray.data.llm  # noqa: F401  (installed with ray[data])
    from distill.config import StageResources
    from distill.generate.engines.vllm import engine_memory, processor_config

    cfg = _vllm_config("m", vllm={"accelerator_type": "A10G", "concurrency": 4})
    pc = processor_config(cfg, chat=True,
                          resources=StageResources(num_cpus=4, num_gpus=2, concurrency=4))
    assert pc.engine_kwargs["tensor_parallel_size"] == 2 and pc.accelerator_type == "A10G"
    assert pc.placement_group_config["bundle_per_worker"] == {"CPU": 2.0, "GPU": 1.0}
    assert pc.placement_group_config["strategy"] == "PACK"
    assert pc.concurrency == (4, 4)
    one = _vllm_config("m", vllm={"tensor_parallel_size": 1})  # concurrency 3 in the vllm section
    pc = processor_config(one, chat=True, resources=StageResources(num_cpus=3, num_gpus=0.5,
                                                                   memory_gb=8))
    assert pc.placement_group_config["bundle_per_worker"] == {"CPU": 3.0, "GPU": 0.5}
    assert pc.concurrency == (3, 3)
    assert engine_memory(one, StageResources(memory_gb=8)) == 8 * 1024**3
    default = processor_config(one, chat=True, resources=StageResources())  # num_gpus 0: one per worker
    assert default.placement_group_config["bundle_per_worker"] == {"CPU": 1.0, "GPU": 1.0}
    with pytest.raises(ValueError, match=r"num_gpus is 1 GPUs.*= 2 worker"):
        processor_config(cfg, chat=True, resources=StageResources(num_gpus=1))
    with pytest.raises(ValueError, match="both set the number of vLLM engine replicas"):
        processor_config(cfg, chat=True, resources=StageResources(num_gpus=2, concurrency=2))
    with pytest.raises(ValueError, match="memory_gb cannot be reserved"):
        engine_memory(cfg, StageResources(memory_gb=8))


def test_vllm_processor_config_of_the_shipped_gpu_config():
    """configs/gsm8k_kpdd_pot.yaml: 4 replicas of one GPU and 4 CPUs each."""
    import ray.data.llm  # noqa: F401  (installed with ray[data])
    from pathlib import Path

    from distill.config import load_config
    from distill.generate.engines.vllm import processor_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "gsm8k_kpdd_pot.yaml")
    pc = processor_config(cfg.generate, chat=True, resources=cfg.ray.for_stage("generate"))
    assert pc.concurrency == (4, 4)
    assert pc.placement_group_config["bundle_per_worker"] == {"CPU": 4.0, "GPU": 1.0}
    assert pc.engine_kwargs["tensor_parallel_size"] == 1


def test_vllm_replica_count_is_fixed():
    """An int concurrency is an autoscaling range 1..n in ray 2.60's vLLM processor (it calls
    get_concurrency(autoscaling_enabled=True)); the engine pool must hold n replicas."""
    import ray.data.llm  # noqa: F401  (installed with ray[data])
    from distill.config import StageResources
    from distill.generate.engines.vllm import processor_config

    for resources in (None, StageResources(concurrency=3)):
        pc = processor_config(_vllm_config("m"), chat=True, resources=resources)
        assert pc.get_concurrency(autoscaling_enabled=True) == {"min_size": 3, "max_size": 3}


@pytest.mark.ray
def test_vllm_processor_stages_on_cpu(ray_local, tiny_lm):
    """The processor is built on CPU from a local model folder; its stages and their settings
    are checked, and its CPU stages (chat template, tokenizer) are run on our rows."""
    import ray.data.llm  # noqa: F401  (installed with ray[data])
    import ray.data
    from ray.llm._internal.batch.processor.base import Processor

    from distill.data.synthetic import SyntheticConfig, generate
    from distill.generate.engines import vllm as v
    from distill.generate.core import work_items

    from distill.config import StageResources

    cfg = _vllm_config(tiny_lm, strategy="pot")
    proc = v.build_processor(cfg, chat=True)
    assert proc.list_stage_names() == ["ChatTemplateStage", "TokenizeStage", "vLLMEngineStage",
                                       "DetokenizeStage"]
    engine = proc.get_stage_by_name("vLLMEngineStage")
    kw = engine.fn_constructor_kwargs
    assert kw["model"] == tiny_lm and kw["should_continue_on_error"] is True
    assert kw["engine_kwargs"]["tensor_parallel_size"] == 2
    compute = engine.map_batches_kwargs["compute"]
    assert (compute.min_size, compute.max_size) == (3, 3)  # a fixed pool of 3 replicas
    assert set(engine.get_required_input_keys()) == {"sampling_params"}
    # one GPU per replica, 4 CPUs, an accelerator type: the engine actor's Ray arguments
    one = v.build_processor(_vllm_config(tiny_lm, vllm={"tensor_parallel_size": 1,
                                                         "accelerator_type": "L4"}),
                            chat=True, resources=StageResources(num_cpus=4, num_gpus=1, concurrency=3))
    mb = one.get_stage_by_name("vLLMEngineStage").map_batches_kwargs
    assert (mb["num_gpus"], mb["num_cpus"], mb["accelerator_type"]) == (1, 4, "L4")
    assert (mb["compute"].min_size, mb["compute"].max_size) == (3, 3)
    stages, actor = v.engine_actor_spec(one)
    assert [fn.__name__ for fn, _ in stages] == ["ChatTemplateUDF", "TokenizeUDF",
                                                  "vLLMEngineStageUDF", "DetokenizeUDF"]
    assert (actor["num_gpus"], actor["num_cpus"], actor["accelerator_type"]) == (1, 4, "L4")
    assert actor["batch_size"] == 16 and actor["max_concurrency"] == 8
    assert v.build_processor(cfg, chat=False).list_stage_names() == [
        "TokenizeStage", "vLLMEngineStage", "DetokenizeStage"]

    rows = generate(SyntheticConfig(), "train")[:2]
    prepared = [v.prepare_round(it, cfg, True) for it in work_items(rows, 2, "pot")]
    req = json.loads(prepared[1]["_request"])
    assert req["sampling_params"]["seed"] != json.loads(prepared[0]["_request"])["sampling_params"]["seed"]
    assert set(engine.get_required_input_keys()) <= set(v.preprocess(prepared[0]))
    cpu_only = Processor(proc.config, [proc.get_stage_by_name("ChatTemplateStage"),
                                       proc.get_stage_by_name("TokenizeStage")], preprocess=v.preprocess)
    out = sorted(cpu_only(ray.data.from_items(prepared)).take_all(), key=lambda r: (r["id"], r["sample_idx"]))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    for row, src in zip(out, prepared):
        expected = tok.apply_chat_template(json.loads(src["_request"])["messages"], tokenize=False,
                                           add_generation_prompt=True)
        assert row["prompt"] == expected and len(row["tokenized_prompt"]) > 100


def test_vllm_rounds_by_hand():
    """prepare_round / absorb_round over three KPDD rounds, the engine's output columns
    written by hand as vLLM writes them (one row failing in round 2)."""
    from distill.records import make_problem
    from distill.generate.engines.vllm import absorb_round, prepare_round
    from distill.generate.core import rationale_rows, work_items

    p = make_problem(dataset="t", split="train", source_id=1, question=QUESTION, answer="12")
    cfg = GenerateConfig(engine="vllm", model="m", strategy="kpdd_cot", chat=False)
    rows = work_items([p], 2, "kpdd_cot")
    replies = {"core_question": "How many pens does Tom have?",
               "information": "1. 3 boxes.\n2. 4 pens in each box.",
               "solve": "3 * 4 = 12.\nThe answer is: 12"}
    for round_ in range(3):
        rows = [prepare_round(r, cfg, False) for r in rows]
        assert all(r["_active"] for r in rows[:1])
        out = []
        for r in rows:
            if not r["_active"]:
                out.append({k: v for k, v in r.items() if not k.startswith("_")})
                continue
            step = json.loads(r["_call"])["step"]
            req = json.loads(r["_request"])
            assert "\nProblem:" in req["sampling_params"]["stop"] and req["prompt"].endswith(":")
            failed = round_ == 1 and r["sample_idx"] == 1
            out.append(absorb_round({**r, "generated_text": "" if failed else replies[step],
                                     "num_input_tokens": 100, "num_generated_tokens": 7,
                                     "time_taken_llm": 0.5,
                                     "__inference_error__": "CUDA OOM" if failed else ""}))
        rows = out
    calls = [json.loads(r["calls"]) for r in rows]
    assert [c["step"] for c in calls[0]] == ["core_question", "information", "solve"]
    assert len(calls[1]) == 2 and calls[1][1]["error"] == "vllm: CUDA OOM"
    result = rationale_rows(rows, calls, cfg, chat=False)
    assert result[0]["verdict"] == "correct" and result[0]["tokens_out"] == 21
    assert result[0]["key_points"].startswith("Core question: How many pens does Tom have?")
    assert result[1]["verdict"] == "error" and result[1]["completion"] is None
    assert "CUDA OOM" in result[1]["error"]


def test_vllm_absorb_cuts_stop_strings():
    """Ray's detokenize stage decodes every generated token, so generated_text can end with
    the stop string vLLM stopped at; the stored completion must not."""
    from distill.generate.engines.vllm import absorb_round, prepare_round
    from distill.generate.core import work_items

    cfg = GenerateConfig(engine="vllm", model="m", strategy="pot", chat=False,
                         sampling={"stop": ["\n\n\n"]})
    item = work_items([{"id": "t/1", "question": QUESTION, "answer": "12", "answer_raw": "12",
                        "quantities": ["3", "4"], "masked_question": QUESTION, "lang": "en"}],
                      1, "pot")[0]
    row = prepare_round(item, cfg, False)
    assert json.loads(row["_request"])["sampling_params"]["stop"] == ["\nProblem:", "\n\n\n"]
    out = absorb_round({**row, "generated_text": "```python\nans = 3 * 4\n```\nProblem:",
                        "generated_tokens": [5, 6, 7], "num_generated_tokens": 3,
                        "num_input_tokens": 90, "time_taken_llm": 0.2, "__inference_error__": ""})
    call = json.loads(out["calls"])[-1]
    assert call["completion"] == "```python\nans = 3 * 4\n```" and call["finish_reason"] == "stop"
    assert call["tokens_out"] == 3 and call["error"] is None
    failed = absorb_round({**row, "generated_text": "", "num_generated_tokens": 0,
                           "__inference_error__": "ValueError: prompt too long"})
    call = json.loads(failed["calls"])[-1]
    assert call["completion"] is None and call["error"] == "vllm ValueError: prompt too long"


def _kpdd_script(problems, fail_question=None):
    """Scripted replies for KPDD-PoT base prompts: each reply runs on into the next
    "Problem:" as a base model does; vLLM stops there."""
    script = []
    for p in problems:
        q = p["question"]
        if q == fail_question:
            script.append(((q, "\nProgram:"), "!error: CUDA out of memory"))
        rhs = p["equation"].split("=", 1)[1]
        script += [((q, "\nProgram:"), f"```python\nans = {rhs}\n```\nProblem: Another one?"),
                   ((q, "Problem-solving information:"), " 1. the numbers of the problem\nProblem: x"),
                   ((q, "Core question:"), " " + q.rsplit(". ", 1)[-1] + "\nProblem: x")]
    return script


@pytest.mark.ray
def test_vllm_run_dataset_on_cpu_one_engine_pool(ray_local, tiny_lm, tmp_path, monkeypatch):
    """generate_dataset with the vllm engine end to end on CPU: the real processor (chat
    template, tokenizer, detokenizer) with its engine stage scripted. A three-round KPDD-PoT
    run over 3 engine batches builds the processor once and one engine per replica; stop
    strings do not reach the stored completions; a failed row is retried by the next run."""
    import ray.data.llm  # noqa: F401  (installed with ray[data])
    from functools import partial

    from distill.data.synthetic import SyntheticConfig, generate
    from distill.sandbox import SandboxConfig
    from distill.generate import generate_dataset, read_rationales
    from distill.generate.engines import vllm
    from distill.generate.testing_vllm import scripted_vllm_processor

    problems = [p for p in generate(SyntheticConfig(), "train")[:20] if p["lang"] == "en"][:5]
    log = tmp_path / "engines.log"
    builds = []

    def factory(script):
        def build(config, chat, resources):
            builds.append(chat)
            return scripted_vllm_processor(config, chat, resources, replies=script,
                                           log_path=str(log))
        return build

    monkeypatch.setattr(vllm, "build_processor", factory(_kpdd_script(problems, problems[2]["question"])))
    cfg = GenerateConfig(engine="vllm", model=tiny_lm, strategy="kpdd_pot", chat=False, samples=2,
                         batch_size=4, sampling={"max_tokens": 64},
                         vllm={"batch_size": 4, "concurrency": 1, "max_concurrent_batches": 2})
    box = SandboxConfig(timeout_s=2.0, workers=1)
    first = generate_dataset(problems, cfg, tmp_path / "out", sandbox=box)
    assert (first["rows"], first["generated"], first["generation_failed"]) == (10, 10, 2)
    assert first["correct"] == 8 and first["generation_errors"] == {"vllm RuntimeError": 2}
    assert len(builds) == 1  # one processor for 3 rounds x 3 batches
    assert log.read_text().count("engine built") == 1  # one engine replica, loaded once
    rows = read_rationales(tmp_path / "out").to_pylist()
    for r in rows:
        calls = json.loads(r["meta"])["calls"]
        if r["id"] == problems[2]["id"]:
            assert r["completion"] is None and "CUDA out of memory" in r["error"]
            assert [c["step"] for c in calls] == ["core_question", "information", "solve"]
            continue
        assert [c["step"] for c in calls] == ["core_question", "information", "solve"]
        assert "Problem:" not in r["completion"] and r["completion"].endswith("```")
        assert all("Problem:" not in c["completion"] for c in calls[:-1])
        assert r["key_points"].startswith("Core question: ") and r["verdict"] == "correct"
        assert r["tokens_out"] > 0 and r["prompt"].endswith("Program:")
    # the teacher recovers: the next run generates the two failed rows only, with a new pool
    monkeypatch.setattr(vllm, "build_processor", factory(_kpdd_script(problems)))
    second = generate_dataset(problems, cfg, tmp_path / "out", sandbox=box)
    assert (second["generated"], second["reused"], second["correct"]) == (2, 8, 10)
    assert len(builds) == 2 and log.read_text().count("engine built") == 2


def test_gpu_extra_is_the_ray_llm_extra_of_the_pinned_ray():
    """The gpu extra installs ray[llm] at the Ray version the project pins, which brings the
    vLLM that Ray release was built against (not a vLLM chosen separately)."""
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    ray_pin = next(d for d in project["dependencies"] if d.startswith("ray["))
    version = ray_pin.split("==", 1)[1]
    assert project["optional-dependencies"]["gpu"] == [f"ray[llm]=={version}"]
    import ray

    assert ray.__version__ == version


@pytest.mark.gpu
def test_vllm_generates_on_gpu(ray_local, tmp_path):
    """The real vLLM call: a tiny model, a three-round strategy, one engine replica."""
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from distill.config import StageResources
    from distill.records import make_problem
    from distill.generate import generate_dataset, read_rationales

    model = build_tiny_lm(tmp_path / "m")
    p = make_problem(dataset="t", split="train", source_id=1, question=QUESTION, answer="12")
    cfg = GenerateConfig(engine="vllm", model=model, strategy="kpdd_cot", samples=2, chat=False,
                         sampling={"max_tokens": 8}, vllm={"max_model_len": 2048})
    summary = generate_dataset([p], cfg, tmp_path / "out",
                               resources=StageResources(num_cpus=1, num_gpus=1, concurrency=1))
    assert summary["rows"] == 2 and summary["generation_failed"] == 0
    for row in read_rationales(tmp_path / "out").to_pylist():
        assert "\nProblem:" not in row["completion"]
