"""``openai``: any OpenAI-compatible server (vLLM's or SGLang's, a hosted API), over plain HTTP.

Chat models get ``POST <base_url>/chat/completions`` with ``messages``; base models (``chat:
false``) get ``POST <base_url>/completions`` with ``prompt`` and the template's stop strings.
Each request carries ``model``, ``max_tokens``, ``temperature``, ``top_p``, ``seed`` (per
request), ``n=1`` and ``openai.extra_body``; the reply's ``choices[0]`` text,
``finish_reason`` and ``usage`` token counts are read.

* Before a run (:meth:`OpenAIEngine.check_ready`, called once by the stage): ``GET
  <base_url>/models``; a server that is down, refuses the key, fails TLS or answers anything
  but 200 stops the run before it starts with a :class:`TeacherUnavailableError` naming the
  URL and what failed (``openai.check_server: false`` skips it).
* Concurrency: at most ``openai.max_concurrency`` requests in flight per engine (one thread
  each, a keep-alive connection per thread).
* Retries: 429, any 5xx, timeouts, deadlines, connection errors and a reply whose content is
  null are retried up to ``openai.max_retries`` times with exponential backoff (``backoff_s``
  doubling, with jitter, capped at ``backoff_max_s``; a ``Retry-After`` header is honoured up
  to that cap). Any other status (400, 401, 404, 422, ...), a TLS error (a certificate or
  protocol problem does not heal by retrying) and a malformed reply fail the request at once.
* Time limits: ``openai.timeout_s`` bounds connecting and every read of the reply (as the
  ``httpx``-based OpenAI clients do); ``openai.deadline_s`` bounds the whole attempt from
  sending the request to the reply's last byte, so a server that trickles bytes is cut off.
* Early stop: once ``stop_after_failures`` requests in a row have failed with the same kind of
  error (:func:`~distill.generate.engines.error_kind`), the engine sends nothing more and
  fails the remaining requests at once with that kind (the stage then stops the run).
* Stop strings: the first four (the OpenAI API's limit) are sent; every stop string, those
  beyond four included, is cut from the completion here with
  :func:`~distill.generate.engines.truncate_at_stop` (servers that echo the stop string, or
  that were not sent it, leave it in).
* The API key is read from the environment variable ``openai.api_key_env`` when the engine
  starts and only ever put in the Authorization header; error texts have it masked.

A request that still fails is a :class:`~distill.generate.engines.GenResult` with ``error``
set (its text starts with the error's kind: ``HTTP 500: ...``, ``timeout: ...``); it never
raises, so one bad request does not sink its batch.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import urlsplit

from distill.generate.engines import (
    GenRequest,
    GenResult,
    TeacherUnavailableError,
    error_kind,
    register_engine,
    sent_prompt,
    stop_strings,
    truncate_at_stop,
)

if TYPE_CHECKING:
    from distill.generate.config import GenerateConfig, SamplingConfig

MAX_STOP = 4  # the OpenAI API takes at most four stop sequences
_RETRY_STATUS = frozenset({408, 409, 425, 429})


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Fatal(Exception):
    pass


class _Endpoint:
    """Where requests go: host, port, TLS and the path prefix of ``base_url``."""

    def __init__(self, base_url: str):
        url = urlsplit(base_url)
        self.https = url.scheme == "https"
        self.host = url.hostname or "localhost"
        self.port = url.port or (443 if self.https else 80)
        self.path = url.path.rstrip("/")
        self.query = f"?{url.query}" if url.query else ""

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


def _headers(key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json",
               "User-Agent": "mathdistill"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def _exchange(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None,
              headers: dict[str, str], timeout_s: float,
              deadline_s: float) -> tuple[int, dict[str, str], bytes, bool]:
    """One HTTP exchange on ``conn`` within ``deadline_s`` (a watchdog shuts the socket when it
    passes, so a trickling reply cannot outlast it); returns (status, headers, body, whether
    the connection must be closed). Raises :class:`_Retryable` / :class:`_Fatal`."""
    expired = threading.Event()

    def cut() -> None:
        expired.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    try:
        if conn.sock is None:
            conn.connect()  # bounded by timeout_s; the deadline starts with the request
    except ssl.SSLError as e:
        raise _Fatal(f"ssl error ({type(e).__name__}): {e}") from None
    except (socket.timeout, TimeoutError):
        raise _Retryable(f"timeout: no connection within {timeout_s:g} s") from None
    except (OSError, http.client.HTTPException) as e:
        raise _Retryable(f"connection error ({type(e).__name__}): {e}") from None
    timer = threading.Timer(deadline_s, cut)
    timer.daemon = True
    timer.start()
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        reply_headers = {k.lower(): v for k, v in resp.getheaders()}
        status, will_close = resp.status, resp.will_close
    except Exception as e:  # noqa: BLE001 - classified below, the deadline first
        if expired.is_set():
            raise _Retryable(f"deadline: the reply took longer than {deadline_s:g} s") from None
        if isinstance(e, ssl.SSLError):
            raise _Fatal(f"ssl error ({type(e).__name__}): {e}") from None
        if isinstance(e, (socket.timeout, TimeoutError)):
            raise _Retryable(f"timeout: no reply within {timeout_s:g} s") from None
        if isinstance(e, (OSError, http.client.HTTPException)):  # refused, reset, closed early
            raise _Retryable(f"connection error ({type(e).__name__}): {e}") from None
        raise
    finally:
        timer.cancel()
    if expired.is_set():  # cut just as the last byte came: the connection is unusable
        raise _Retryable(f"deadline: the reply took longer than {deadline_s:g} s")
    return status, reply_headers, data, will_close


@register_engine("openai")
class OpenAIEngine:
    dataset_level = False

    def __init__(self, config: GenerateConfig) -> None:
        c = config.openai
        self.config = config
        self.chat = True if config.chat is None else config.chat
        self._endpoint = _Endpoint(c.base_url)
        self._path = (self._endpoint.path + ("/chat/completions" if self.chat else "/completions")
                      + self._endpoint.query)
        self._key = os.environ.get(c.api_key_env) if c.api_key_env else None
        self._headers = _headers(self._key)
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=c.max_concurrency, thread_name_prefix="teacher-http")
        self._streak_lock = threading.Lock()
        self._streak: tuple[str, int, str] = ("", 0, "")  # kind, count, last error
        self._stopped: str | None = None  # the error every further request gets

    def __repr__(self) -> str:  # no key in reprs or logs
        return f"OpenAIEngine(base_url={self.config.openai.base_url!r}, model={self.config.model!r})"

    # ------------------------------------------------------------------------------ public
    @staticmethod
    def check_ready(config: GenerateConfig) -> None:
        """``GET <base_url>/models`` once; raises :class:`TeacherUnavailableError` naming the
        URL and what failed (down, refused, TLS, timeout, a status other than 200)."""
        c = config.openai
        if not c.check_server:
            return
        endpoint = _Endpoint(c.base_url)
        url = f"{c.base_url}/models"
        key = os.environ.get(c.api_key_env) if c.api_key_env else None
        conn = endpoint.connection(c.timeout_s)
        try:
            status, _, data, _ = _exchange(conn, "GET", endpoint.path + "/models" + endpoint.query,
                                           None, _headers(key), c.timeout_s,
                                           min(c.deadline_s, c.timeout_s))
        except (_Retryable, _Fatal) as e:
            what = str(e)
            if key:
                what = what.replace(key, "***")
            raise TeacherUnavailableError(
                f"the openai engine cannot use the server at {url}: {what} (is the server "
                "running, and is openai.base_url right?)") from None
        finally:
            conn.close()
        if status != 200:
            excerpt = data[:300].decode("utf-8", "replace").strip()
            if key:
                excerpt = excerpt.replace(key, "***")
            hint = {401: " (check the API key in $" + str(c.api_key_env) + ")",
                    403: " (the API key is not allowed here)",
                    404: " (no /models route: is openai.base_url the URL up to /v1?)"}.get(status, "")
            raise TeacherUnavailableError(
                f"the openai engine cannot use the server at {url}: HTTP {status}: "
                f"{excerpt}{hint}")

    def generate(self, requests: Sequence[GenRequest], sampling: SamplingConfig) -> list[GenResult]:
        futures = [self._pool.submit(self._one, r, sampling) for r in requests]
        return [f.result() for f in futures]

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # ----------------------------------------------------------------------------- request
    def stops(self, request: GenRequest, sampling: SamplingConfig) -> list[str]:
        """Every stop string of a request (the first :data:`MAX_STOP` are sent)."""
        return stop_strings(request.prompt, sampling, self.chat)

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
        stops = self.stops(request, sampling)[:MAX_STOP]
        if stops:
            body["stop"] = stops
        body.update(self.config.openai.extra_body)
        return body

    def _one(self, request: GenRequest, sampling: SamplingConfig) -> GenResult:
        c = self.config.openai
        payload = json.dumps(self.body(request, sampling)).encode()
        sent = sent_prompt(request.prompt, self.chat)
        t0 = time.perf_counter()
        if self._stopped is not None:
            return GenResult(None, error=self._stopped, sent=sent)
        error = "no attempt made"
        retry_after: float | None = None  # what the last retryable reply asked for
        attempt = 0
        for attempt in range(c.max_retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
                if self._stopped is not None:
                    return GenResult(None, error=self._stopped, latency_s=time.perf_counter() - t0,
                                     sent=sent)
            retry_after = None
            try:
                res = self._read(self._post(payload))
            except _Retryable as e:
                error, retry_after = str(e), e.retry_after
                continue
            except _Fatal as e:
                error = str(e)
                break
            res.text, cut = truncate_at_stop(res.text, self.stops(request, sampling))
            if cut:
                res.finish_reason = "stop"
            res.latency_s = time.perf_counter() - t0
            res.sent = sent
            self._record(None)
            return res
        error = self._mask(f"{error} (after {attempt + 1} attempt(s))")
        self._record(error)
        return GenResult(None, error=error, latency_s=time.perf_counter() - t0, sent=sent)

    def _record(self, error: str | None) -> None:
        """Count consecutive failures of one kind; past ``stop_after_failures`` the engine
        stops sending (every later request fails at once with that kind)."""
        limit = self.config.stop_after_failures
        with self._streak_lock:
            if error is None:
                self._streak = ("", 0, "")
                return
            kind = error_kind(error)
            count = self._streak[1] + 1 if self._streak[0] == kind else 1
            self._streak = (kind, count, error)
            if limit is not None and count >= limit and self._stopped is None:
                self._stopped = (f"{kind}: not sent, the previous {count} requests failed this "
                                 f"way (last: {error})")[:1000]

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        c = self.config.openai
        if retry_after is not None:
            return min(max(retry_after, 0.0), c.backoff_max_s)
        base = min(c.backoff_s * 2 ** (attempt - 1), c.backoff_max_s)
        return base * (0.5 + random.random() / 2)

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._endpoint.connection(self.config.openai.timeout_s)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _post(self, payload: bytes) -> tuple[int, dict[str, str], bytes]:
        c = self.config.openai
        try:
            status, headers, data, will_close = _exchange(
                self._connection(), "POST", self._path, payload, self._headers, c.timeout_s,
                c.deadline_s)
        except (_Retryable, _Fatal):
            self._drop_connection()
            raise
        if will_close:
            self._drop_connection()
        return status, headers, data

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
        if text is None:  # e.g. a reasoning model that spent max_tokens before answering
            raise _Retryable(f"empty reply: the completion is null (finish_reason "
                             f"{choice.get('finish_reason')!r})")
        if not isinstance(text, str):
            raise _Fatal(f"malformed reply (completion is a {type(text).__name__}): {data[:200]!r}")
        usage = obj.get("usage") or {}
        return GenResult(
            text,
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
