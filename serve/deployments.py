"""Ray Serve deployments: one :class:`StudentServer` per model, behind the :class:`Gateway`.

The gateway is a FastAPI ingress: it reads and checks each request (:mod:`serve.api`), sends
its questions to the named student's deployment through a handle, and maps what comes back to
HTTP. The questions of concurrent requests travel together (:class:`serve.forward.Forwarder`:
one call carries up to a batch), so Serve's per-call cost is paid per batch, not per question.
A student replica holds one :class:`serve.solver.Solver` (the model, and a sandbox pool for
program students sized from the replica's CPUs) and decodes the questions that arrive together
in one ``@serve.batch`` call, off the event loop (a worker thread), so that health checks and
new requests are answered while it decodes.

Overload: past the gateway's admission limit for a model (every replica's
``max_ongoing_requests`` plus ``max_queued_requests`` questions), or when the student
deployment's own queue is full (``BackPressureError``), a request gets 503 with
``Retry-After``. A request not answered within ``request_timeout_s`` gets 504; its questions
are dropped if not yet sent, and a call none of whose requests still waits is cancelled. A
replica that dies mid-call is retried on another (or its replacement) until the deadlines.
"""

# No `from __future__ import annotations` here: Serve's class-based FastAPI views read the
# route methods' signatures as written, and string annotations would turn `request: Request`
# into a body field.
import asyncio
import logging
import time
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from starlette.exceptions import HTTPException as StarletteHTTPException

from distill.metrics import record
from serve import api
from serve.config import ServeConfig
from serve.forward import Forwarder, Overloaded
from serve.solver import SolveItem, Solver, StudentSpec

__all__ = ["Gateway", "StudentServer", "fastapi_app"]

logger = logging.getLogger("ray.serve")

#: Seconds a client is told to wait after a 503.
RETRY_AFTER_S = 1


@serve.deployment
class StudentServer:
    """One student's replica: questions in, result dicts out (see :meth:`Solver.solve`)."""

    def __init__(self, spec: dict[str, Any], config: dict[str, Any]):
        self.spec = StudentSpec.from_json(spec)
        self.config = ServeConfig.model_validate(config)
        model = self.spec.name
        sandbox = self.config.sandbox.model_dump(mode="json") if self.config.sandbox else None
        self.solver = Solver(self.spec, sandbox=sandbox,
                             on_sandbox_s=lambda s: record("sandbox_ms", s * 1000, model=model))
        self.solve_batch.set_max_batch_size(self.config.max_batch_size)
        self.solve_batch.set_batch_wait_timeout_s(self.config.batch_wait_timeout_s)
        self._lock = asyncio.Lock()
        # set while no batch is decoding: a question arriving during a decode waits for it to
        # end and then joins the batch that forms (without this, Serve forms the next batches
        # during the decode, from the one or two questions that arrived, and they never merge)
        self._idle = asyncio.Event()
        self._idle.set()

    def check_health(self) -> None:
        if not self.solver.healthy():
            raise RuntimeError("the sandbox pool has no workers")

    async def ready(self) -> bool:
        return True

    def _solve_now(self, items: list[SolveItem]) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        results = self.solver.solve(items)
        model = self.spec.name
        record("solve_latency_ms", (time.perf_counter() - t0) * 1000, model=model)
        record("batch_size", len(items), model=model)
        for r in results:
            if r["error"]:
                record("answer_errors", model=model, error=r["error"])
        return results

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def solve_batch(self, items: list[SolveItem]) -> list[dict[str, Any]]:
        async with self._lock:  # one decode at a time per replica, off the event loop
            self._idle.clear()
            try:
                return await asyncio.to_thread(self._solve_now, items)
            finally:
                self._idle.set()

    async def solve(self, item: SolveItem) -> dict[str, Any]:
        await self._idle.wait()
        return await self.solve_batch(item)

    async def solve_many(self, items: list[SolveItem]) -> list[dict[str, Any]]:
        """The results of ``items``, in order: one call from the gateway carries the questions
        of many requests (:mod:`serve.forward`); each joins this replica's batches."""
        return list(await asyncio.gather(*(self.solve(item) for item in items)))

    def __del__(self) -> None:
        solver = getattr(self, "solver", None)
        if solver is not None:
            solver.close()


fastapi_app = FastAPI(title="mathdistill", docs_url=None, redoc_url=None, openapi_url=None)


def _error_response(err: api.ApiError) -> JSONResponse:
    headers = dict(err.headers)
    if err.status == 503:
        headers.setdefault("Retry-After", str(RETRY_AFTER_S))
    return JSONResponse(api.error_body(err), status_code=err.status, headers=headers)


@fastapi_app.exception_handler(api.ApiError)
async def _api_error(request: Request, exc: api.ApiError) -> JSONResponse:
    return _error_response(exc)


@fastapi_app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return _error_response(api.ApiError(exc.status_code, str(exc.detail), code=code))


@fastapi_app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = (exc.errors() or [{}])[0]
    param = ".".join(str(p) for p in first.get("loc", ())) or None
    return _error_response(api.ApiError(400, f"invalid request: {param}: {first.get('msg')}",
                                        param=param, code="invalid_value"))


@fastapi_app.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error on %s", request.url.path)  # the trace stays in the log
    return _error_response(api.ApiError(500, "internal error", code="internal_error"))


@serve.deployment
@serve.ingress(fastapi_app)
class Gateway:
    """The HTTP face: routes, input checks, handles to the students, status mapping."""

    def __init__(self, students: dict[str, Any], config: dict[str, Any]):
        self.students = dict(students)  # model name -> DeploymentHandle
        self.config = ServeConfig.model_validate(config)
        self.created = int(time.time())
        self._forwarders: dict[str, Forwarder] = {}

    # ------------------------------------------------------------------ plumbing
    async def _body(self, request: Request) -> Any:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.config.max_body_bytes:
            raise api.ApiError(413, f"request body over {self.config.max_body_bytes} bytes",
                               code="body_too_large")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.config.max_body_bytes:
                break
        return api.read_json(body, request.headers.get("content-type"),
                             self.config.max_body_bytes)

    def _forwarder(self, model: str) -> Forwarder:
        """The forwarder of ``model``'s questions (made on first use, in the event loop)."""
        forwarder = self._forwarders.get(model)
        if forwarder is None:
            handle = self.students[model]

            async def send(items: list[SolveItem]) -> list[dict[str, Any]]:
                while True:
                    response = handle.solve_many.remote(items)  # (Ray pickles them)
                    try:
                        return await response
                    except asyncio.CancelledError:  # every request in it gave up
                        response.cancel()
                        raise
                    except BackPressureError:
                        raise api.ApiError(503, f"model {model!r} is at capacity; retry later",
                                           code="overloaded") from None
                    except (RayActorError, DeploymentUnavailableError):
                        # the replica died (or none is up yet): the controller replaces it; the
                        # requests' deadlines end the retries (their calls are cancelled)
                        await asyncio.sleep(0.5)

            forwarder = Forwarder(send, **self.config.forwarding_limits())
            self._forwarders[model] = forwarder
        return forwarder

    async def _ask(self, model: str, items: list[SolveItem], deadline: float) -> list[dict]:
        """Every item answered by ``model``'s replicas (coalesced with other requests')."""
        try:
            return await self._forwarder(model).submit(
                items, timeout=max(0.0, deadline - time.monotonic()))
        except Overloaded:
            raise api.ApiError(503, f"model {model!r} is at capacity; retry later",
                               code="overloaded") from None
        except asyncio.TimeoutError:
            raise api.ApiError(504, f"no answer within {self.config.request_timeout_s} s",
                               code="timeout") from None

    async def _serve(self, route: str, request: Request, request_model: type,
                     items_of: Callable, respond: Callable) -> JSONResponse:
        """One route's work: read and check the body as ``request_model``, pick the model,
        ``items_of(request, config)`` -> questions, ask the student, ``respond(model, results,
        ms)`` -> the JSON body. Every refusal becomes its status; every reply is counted."""
        t0 = time.perf_counter()
        model = "-"
        try:
            deadline = time.monotonic() + self.config.request_timeout_s
            req = api.parse(request_model, await self._body(request))
            model = api.pick_model(req.model, list(self.students))
            items = items_of(req, self.config)
            t_ask = time.perf_counter()
            results = await self._ask(model, items, deadline)
            response = JSONResponse(respond(model, results,
                                            (time.perf_counter() - t_ask) * 1000))
        except api.ApiError as err:
            response = _error_response(err)
        record("requests", model=model, route=route, status=response.status_code)
        record("request_latency_ms", (time.perf_counter() - t0) * 1000, model=model,
               route=route)
        return response

    # ------------------------------------------------------------------ routes
    @fastapi_app.post("/v1/solve")
    async def solve(self, request: Request) -> JSONResponse:
        return await self._serve("solve", request, api.SolveRequest, api.solve_items,
                                 lambda m, rs, ms: api.solve_response(m, rs[0], ms))

    @fastapi_app.post("/v1/solve/batch")
    async def solve_batch(self, request: Request) -> JSONResponse:
        return await self._serve("solve_batch", request, api.BatchRequest, api.solve_items,
                                 lambda m, rs, ms: {"model": m, "results": [
                                     api.solve_response(m, r, ms) for r in rs]})

    @fastapi_app.post("/v1/chat/completions")
    async def chat(self, request: Request) -> JSONResponse:
        return await self._serve("chat", request, api.ChatRequest,
                                 lambda req, cfg: [api.chat_item(req, cfg)],
                                 lambda m, rs, ms: api.chat_response(m, rs[0]))

    @fastapi_app.post("/v1/completions")
    async def completions(self, request: Request) -> JSONResponse:
        return await self._serve("completions", request, api.CompletionRequest,
                                 api.completion_items,
                                 lambda m, rs, ms: api.completion_response(m, rs))

    @fastapi_app.get("/v1/models")
    async def models(self) -> JSONResponse:
        return JSONResponse(api.models_response(list(self.students), self.created))

    @fastapi_app.get("/healthz")
    async def healthz(self) -> JSONResponse:
        async def ready(name: str, handle: Any) -> tuple[str, bool]:
            try:
                return name, bool(await asyncio.wait_for(handle.ready.remote(), timeout=5.0))
            except Exception:  # noqa: BLE001 - any failure means "not ready"
                return name, False
        states = dict(await asyncio.gather(*(ready(n, h) for n, h in self.students.items())))
        ok = all(states.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "models": states},
                            status_code=200 if ok else 503)
