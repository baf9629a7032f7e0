"""Offline stand-ins for a teacher: a tiny random model and an OpenAI-compatible HTTP server.

Nothing can be downloaded in CI, so tests and benchmarks need teachers they build themselves:

* :func:`build_tiny_lm` -- a randomly initialised decoder-only model (Qwen2 architecture, a
  few hundred thousand parameters) with a byte-level BPE tokenizer trained on the shipped
  prompt templates and a small chat template, saved with ``save_pretrained`` so that the
  production loading code (``from_pretrained``) reads it. Its text is gibberish; what it
  exercises is the machinery.
* :class:`TeacherServer` -- a real HTTP server on loopback speaking the OpenAI API
  (``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``) with the
  real request and response shapes. Replies come from a transformers model (``model_dir``,
  served through the ``hf`` engine) or from a ``responder`` function (scripted teachers).
  Faults on demand: the first N requests fail with a status (429 with ``Retry-After``, 503,
  ...) or with a dropped connection, every reply can be delayed (a slow server) or trickled a
  byte at a time (a server that never stops sending), a responder returning None gives a
  completion of ``null``, ``GET /v1/models`` can answer another status, an API key can be
  required (401 otherwise). Every request body is recorded.

The ``vllm`` engine's CPU stand-in (its processor with the engine stage scripted) is in
:mod:`distill.generate.testing_vllm` (it imports Ray's LLM stages).

``python -m distill.generate.testing --model DIR [--port 8000]`` serves a local model folder
(for trying the ``openai`` engine without a real server).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

__all__ = ["CHAT_TEMPLATE", "TeacherServer", "build_tiny_lm"]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tiny_lm(out_dir: str | Path, *, hidden_size: int = 64, layers: int = 2,
                  vocab_size: int = 600, chat_template: bool = True, seed: int = 0) -> str:
    """Save a tiny random causal LM + trained tokenizer to ``out_dir``; returns the path."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from distill.generate.templates import PROMPTS_DIR
    from distill.train.students import train_tokenizer

    texts = [p.read_text(encoding="utf-8") for p in sorted(PROMPTS_DIR.glob("*.yaml"))]
    texts += ["The answer is: 42", "```python\nans = 6 * 7\n```", "Equation: x=(N0-N1)/N2"]
    tok = train_tokenizer(texts * 4, vocab_size, append_eos=False, min_frequency=1)
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    heads = max(2, hidden_size // 32)
    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=4096, tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
    )
    model = Qwen2ForCausalLM(config)
    out = Path(out_dir)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


Responder = Callable[[str, dict], "str | None"]  # (endpoint, request body) -> text (None: null)


class TeacherServer:
    """An OpenAI-compatible server on 127.0.0.1 (see the module docstring). Use as a context
    manager; ``url`` is the ``base_url`` to give the ``openai`` engine."""

    def __init__(self, responder: Responder | None = None, *, model_dir: str | None = None,
                 api_key: str | None = None, fail_first: int = 0, fail_status: int = 503,
                 retry_after: float | None = None, drop_first: int = 0, delay_s: float = 0.0,
                 trickle_s: float = 0.0, models_status: int = 200, port: int = 0):
        if (responder is None) == (model_dir is None):
            raise ValueError("give a responder or a model_dir (one of them)")
        self.responder = responder
        self.model_dir = model_dir
        self.api_key = api_key
        self.fail_first, self.fail_status, self.retry_after = fail_first, fail_status, retry_after
        self.drop_first = drop_first
        self.delay_s = delay_s
        self.trickle_s = trickle_s  # > 0: the reply body goes out one byte per trickle_s
        self.models_status = models_status
        self.models_requests = 0  # GET /v1/models served
        self.requests: list[tuple[str, dict]] = []  # (endpoint, body) of every accepted request
        self.statuses: list[int] = []  # status of every reply, in order (0: connection dropped)
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._engines: dict[bool, Any] = {}
        self._seen = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> TeacherServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="teacher-server")
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------------------ model
    def _model_reply(self, endpoint: str, body: dict) -> tuple[str, int, int, str]:
        from distill.generate.config import GenerateConfig, SamplingConfig
        from distill.generate.engines import GenRequest
        from distill.generate.engines.hf import HFEngine
        from distill.generate.templates import Prompt

        chat = endpoint == "chat"
        with self._model_lock:
            engine = self._engines.get(chat)
            if engine is None:
                cfg = GenerateConfig(engine="hf", model=self.model_dir, chat=chat, strategy="cot")
                engine = self._engines[chat] = HFEngine(cfg)
            stop = body.get("stop") or []
            sampling = SamplingConfig(max_tokens=int(body.get("max_tokens") or 16),
                                      temperature=float(body.get("temperature") or 0.0),
                                      top_p=float(body.get("top_p") or 1.0),
                                      stop=[stop] if isinstance(stop, str) else list(stop))
            prompt = Prompt(tuple(body.get("messages") or ()), body.get("prompt") or "")
            res = engine.generate([GenRequest(prompt, int(body.get("seed") or 0))], sampling)[0]
        if res.error:
            raise RuntimeError(res.error)
        return res.text or "", res.tokens_in, res.tokens_out, res.finish_reason or "stop"

    def _reply(self, endpoint: str, body: dict) -> dict:
        if self.responder is not None:
            text = self.responder(endpoint, body)
            prompt = body.get("prompt") or json.dumps(body.get("messages"))
            tin, tout, finish = len(str(prompt).split()), len((text or "").split()), "stop"
        else:
            text, tin, tout, finish = self._model_reply(endpoint, body)
        usage = {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}
        base = {"created": int(time.time()), "model": body.get("model"), "usage": usage}
        if endpoint == "chat":
            return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", **base,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": finish}]}
        return {"id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "text_completion", **base,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}

    # ---------------------------------------------------------------------------- handler
    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, obj: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(obj).encode()
                with server._lock:  # recorded before the client can read the reply
                    server.statuses.append(status)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if server.trickle_s and status == 200:
                    for i in range(len(data)):
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                        time.sleep(server.trickle_s)
                else:
                    self.wfile.write(data)

            def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
                self._send(status, {"error": {"message": message, "type": "invalid_request_error",
                                              "code": status}}, headers)

            def _authorized(self) -> bool:
                if server.api_key is None:
                    return True
                if self.headers.get("Authorization") == f"Bearer {server.api_key}":
                    return True
                self._error(401, "Incorrect API key provided.")
                return False

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/") != "/v1/models":
                    return self._error(404, f"no route {self.path}")
                with server._lock:
                    server.models_requests += 1
                if server.models_status != 200:
                    return self._error(server.models_status, "models are not available")
                if self._authorized():
                    self._send(200, {"object": "list", "data": [
                        {"id": server.model_dir or "scripted", "object": "model", "owned_by": "test"}]})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                routes = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}
                endpoint = routes.get(self.path.rstrip("/"))
                if endpoint is None:
                    return self._error(404, f"no route {self.path}")
                if not self._authorized():
                    return
                with server._lock:
                    server._seen += 1
                    n = server._seen
                if n <= server.drop_first:
                    with server._lock:
                        server.statuses.append(0)
                    self.close_connection = True
                    self.connection.shutdown(2)  # no reply at all
                    return
                if n <= server.drop_first + server.fail_first:
                    headers = ({"Retry-After": f"{server.retry_after:g}"}
                               if server.retry_after is not None else None)
                    return self._error(server.fail_status, "try again later", headers)
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._error(400, "body is not JSON")
                key = "messages" if endpoint == "chat" else "prompt"
                if not isinstance(body, dict) or key not in body or "model" not in body:
                    return self._error(400, f"'model' and '{key}' are required")
                with server._lock:
                    server.requests.append((endpoint, body))
                if server.delay_s:
                    time.sleep(server.delay_s)
                try:
                    reply = server._reply(endpoint, body)
                except Exception as e:  # noqa: BLE001 - a server error, as a real server reports it
                    return self._error(500, f"{type(e).__name__}: {e}")
                try:
                    self._send(200, reply)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass  # the client gave up (its timeout or deadline)

        return Handler


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Serve a local transformers model over the OpenAI API.")
    ap.add_argument("--model", required=True, help="A folder save_pretrained wrote.")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args(argv)
    server = TeacherServer(model_dir=args.model, port=args.port)
    print(f"serving {args.model} at {server.url}", flush=True)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
