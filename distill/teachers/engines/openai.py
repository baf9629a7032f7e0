"""``openai``: any OpenAI-compatible server (vLLM's or SGLang's, a hosted API), over plain HTTP.

Chat models get ``POST <base_url>/chat/completions`` with ``messages``; base models (``chat:
false``) get ``POST <base_url>/completions`` with ``prompt`` and the template's stop strings.
Each request carries ``model``, ``max_tokens``, ``temperature``, ``top_p``, ``seed`` (per
request), ``n=1`` and ``openai.extra_body``; the reply's ``choices[0]`` text,
``finish_reason`` and ``usage`` token counts are read.

* Concurrency: at most ``openai.max_concurrency`` requests in flight per engine (one thread
  each, a keep-alive connection per thread).
* Retries: 429, any 5xx, timeouts and connection errors are retried up to
  ``openai.max_retries`` times with exponential backoff (``backoff_s`` doubling, with jitter,
  capped at ``backoff_max_s``; a ``Retry-After`` header is honoured up to that cap). Any other
  status (400, 401, 404, ...) and a malformed reply fail the request at once.
* Timeout: ``openai.timeout_s`` bounds connecting and every read of the reply (as the
  ``httpx``-based OpenAI clients do), so a server that does not answer in time is a timeout.
* The API key is read from the environment variable ``openai.api_key_env`` when the engine
  starts and only ever put in the Authorization header; error texts have it masked.

A request that still fails is a :class:`~distill.teachers.engines.GenResult` with ``error``
set; it never raises, so one bad request does not sink its batch.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import urlsplit

from distill.teachers.engines import GenRequest, GenResult, register_engine, sent_prompt, stop_strings

if TYPE_CHECKING:
    from distill.teachers.config import GenerateConfig, SamplingConfig

MAX_STOP = 4  # the OpenAI API takes at most four stop sequences
_RETRY_STATUS = frozenset({408, 409, 425, 429})


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Fatal(Exception):
    pass


@register_engine("openai")
class OpenAIEngine:
    dataset_level = False

    def __init__(self, config: GenerateConfig) -> None:
        c = config.openai
        self.config = config
        self.chat = True if config.chat is None else config.chat
        url = urlsplit(c.base_url + ("/chat/completions" if self.chat else "/completions"))
        self._https = url.scheme == "https"
        self._host = url.hostname or "localhost"
        self._port = url.port or (443 if self._https else 80)
        self._path = url.path + (f"?{url.query}" if url.query else "")
        self._key = os.environ.get(c.api_key_env) if c.api_key_env else None
        self._headers = {"Content-Type": "application/json", "Accept": "application/json",
                         "User-Agent": "mathdistill"}
        if self._key:
            self._headers["Authorization"] = f"Bearer {self._key}"
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=c.max_concurrency, thread_name_prefix="teacher-http")

    def __repr__(self) -> str:  # no key in reprs or logs
        return f"OpenAIEngine(base_url={self.config.openai.base_url!r}, model={self.config.model!r})"

    # ------------------------------------------------------------------------------ public
    def generate(self, requests: Sequence[GenRequest], sampling: SamplingConfig) -> list[GenResult]:
        futures = [self._pool.submit(self._one, r, sampling) for r in requests]
        return [f.result() for f in futures]

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # ----------------------------------------------------------------------------- request
    def body(self, request: GenRequest, sampling: SamplingConfig) -> dict[str, Any]:
        """The JSON body of one request (what a test server sees)."""
        body: dict[str, Any] = {
            "model": self.config.model,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": request.seed,
            "n": 1,
        }
        if self.chat:
            body["messages"] = list(request.prompt.messages)
        else:
            body["prompt"] = request.prompt.text
        stops = stop_strings(request.prompt, sampling, self.chat)[:MAX_STOP]
        if stops:
            body["stop"] = stops
        body.update(self.config.openai.extra_body)
        return body

    def _one(self, request: GenRequest, sampling: SamplingConfig) -> GenResult:
        c = self.config.openai
        payload = json.dumps(self.body(request, sampling)).encode()
        sent = sent_prompt(request.prompt, self.chat)
        t0 = time.perf_counter()
        error = "no attempt made"
        retry_after: float | None = None  # what the last retryable reply asked for
        for attempt in range(c.max_retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
            retry_after = None
            try:
                reply = self._post(payload)
                res = self._read(reply)
                res.latency_s = time.perf_counter() - t0
                res.sent = sent
                return res
            except _Retryable as e:
                error, retry_after = str(e), e.retry_after
            except _Fatal as e:
                error = str(e)
                break
        return GenResult(None, error=self._mask(f"{error} (after {attempt + 1} attempt(s))"),
                         latency_s=time.perf_counter() - t0, sent=sent)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        c = self.config.openai
        if retry_after is not None:
            return min(max(retry_after, 0.0), c.backoff_max_s)
        base = min(c.backoff_s * 2 ** (attempt - 1), c.backoff_max_s)
        return base * (0.5 + random.random() / 2)

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            timeout = self.config.openai.timeout_s
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _post(self, payload: bytes) -> tuple[int, dict[str, str], bytes]:
        try:
            conn = self._connection()
            conn.request("POST", self._path, body=payload, headers=self._headers)
            resp = conn.getresponse()
            data = resp.read()
            headers = {k.lower(): v for k, v in resp.getheaders()}
            if resp.will_close:
                self._drop_connection()
            return resp.status, headers, data
        except (socket.timeout, TimeoutError):
            self._drop_connection()
            raise _Retryable(f"timeout after {self.config.openai.timeout_s:g} s") from None
        except (OSError, http.client.HTTPException) as e:  # refused, reset, closed early
            self._drop_connection()
            raise _Retryable(f"connection error: {type(e).__name__}: {e}") from None

    def _read(self, reply: tuple[int, dict[str, str], bytes]) -> GenResult:
        status, headers, data = reply
        if status != 200:
            excerpt = data[:300].decode("utf-8", "replace").strip()
            message = f"HTTP {status}: {excerpt}"
            if status in _RETRY_STATUS or status >= 500:
                raise _Retryable(message, _retry_after(headers.get("retry-after")))
            raise _Fatal(message)
        try:
            obj = json.loads(data)
            choice = obj["choices"][0]
            text = choice["message"]["content"] if self.chat else choice["text"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise _Fatal(f"malformed reply ({type(e).__name__}): {data[:200]!r}") from None
        usage = obj.get("usage") or {}
        return GenResult(
            text if isinstance(text, str) else "",
            None,
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            0.0,
            choice.get("finish_reason"),
        )

    def _mask(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: fall back to the backoff
