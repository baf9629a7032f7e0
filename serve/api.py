"""The HTTP API's requests, responses and errors, without Ray or FastAPI (pure, tested alone).

Routes (see README "Serve a student"): ``POST /v1/solve``, ``POST /v1/solve/batch``,
``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /healthz``.

Every refusal is an :class:`ApiError`, sent in OpenAI's error shape
``{"error": {"message", "type", "param", "code"}}``: bad input is a 4xx naming the field
(``param``), overload a 503 with ``Retry-After``, a request past its deadline a 504. Nothing
here formats a traceback.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from serve.config import ServeConfig
from serve.solver import SolveItem, SolveParams

__all__ = ["ApiError", "BatchRequest", "ChatRequest", "CompletionRequest", "SolveRequest",
           "chat_response", "completion_response", "error_body", "models_response", "parse",
           "read_json", "solve_response", "ANSWER_LINE"]

#: The last line of an OpenAI-route completion: ``The answer is <answer>.``
ANSWER_LINE = "The answer is {answer}."


class ApiError(Exception):
    """A refusal the client gets as ``status`` + OpenAI's error shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, type: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or ("invalid_request_error" if status < 500 else
                             "overloaded_error" if status == 503 else
                             "timeout_error" if status == 504 else "server_error")
        self.headers = headers or {}


def error_body(err: ApiError) -> dict[str, Any]:
    return {"error": {"message": err.message, "type": err.type, "param": err.param,
                      "code": err.code}}


def read_json(body: bytes, content_type: str | None, max_bytes: int) -> Any:
    """The request body as JSON: refuses a body over ``max_bytes`` (413), another content type
    (415), a charset other than UTF-8, invalid UTF-8 or malformed JSON (400)."""
    if len(body) > max_bytes:
        raise ApiError(413, f"request body over {max_bytes} bytes", code="body_too_large")
    media, _, params = (content_type or "").partition(";")
    if media.strip().lower() != "application/json":
        raise ApiError(415, f"content type must be application/json (got {media.strip() or 'none'!r})",
                       code="unsupported_media_type")
    charset = params.strip().lower()
    if charset.startswith("charset=") and charset[8:].strip('"') not in ("utf-8", "utf8"):
        raise ApiError(415, f"only UTF-8 bodies are read (got {charset!r})",
                       code="unsupported_media_type")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"body is not valid UTF-8 (byte {e.start})", code="invalid_utf8") from None
    if not text.strip():
        raise ApiError(400, "empty body: a JSON object was expected", code="invalid_json")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
        raise ApiError(400, f"malformed JSON: {msg}", code="invalid_json") from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Lenient(BaseModel):  # the OpenAI routes: clients send fields this server does not use
    model_config = ConfigDict(extra="ignore")


class SolveRequest(_Strict):
    question: StrictStr
    model: StrictStr | None = None
    num_samples: StrictInt = 1
    lang: Literal["en", "zh"] | None = None


class BatchRequest(_Strict):
    questions: list[StrictStr]
    model: StrictStr | None = None
    num_samples: StrictInt = 1
    lang: Literal["en", "zh"] | None = None


class _Sampling(_Lenient):
    model: StrictStr | None = None
    n: StrictInt = 1
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: StrictInt | None = None
    stop: StrictStr | list[StrictStr] | None = None
    stream: bool = False


class ChatMessage(_Lenient):
    role: StrictStr
    content: StrictStr | list[dict[str, Any]] | None = None


class ChatRequest(_Sampling):
    messages: list[ChatMessage]


class CompletionRequest(_Sampling):
    prompt: StrictStr | list[StrictStr]


def parse(model: type[BaseModel], data: Any) -> Any:
    """``data`` validated as ``model``; a 400 naming the first offending field otherwise."""
    if not isinstance(data, dict):
        raise ApiError(400, f"the body must be a JSON object (got {type(data).__name__})",
                       code="invalid_type")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        kind = err["type"]
        msg = "unknown field" if kind == "extra_forbidden" else err["msg"]
        raise ApiError(400, f"{param}: {msg}", param=param,
                       code="missing_field" if kind == "missing" else "invalid_value") from None


def check_question(question: str, config: ServeConfig, param: str) -> str:
    if not question.strip():
        raise ApiError(400, f"{param}: empty question", param=param, code="empty_question")
    if len(question) > config.max_question_chars:
        raise ApiError(400, f"{param}: question over {config.max_question_chars} characters "
                       f"({len(question)})", param=param, code="question_too_long")
    if "\x00" in question:
        raise ApiError(400, f"{param}: NUL character in the question", param=param,
                       code="invalid_value")
    return question


def check_samples(n: int, config: ServeConfig, param: str) -> int:
    if not 1 <= n <= config.max_samples:
        raise ApiError(400, f"{param}: must be between 1 and {config.max_samples} (got {n})",
                       param=param, code="invalid_value")
    return n


def pick_model(requested: str | None, served: Sequence[str]) -> str:
    """The model a request names; optional when one model is served (404 for an unknown one)."""
    if requested is None or requested == "":
        if len(served) == 1:
            return served[0]
        raise ApiError(400, f"model: required when several models are served ({', '.join(served)})",
                       param="model", code="missing_field")
    if requested not in served:
        raise ApiError(404, f"model {requested!r} is not served here; served: {', '.join(served)}",
                       param="model", code="model_not_found")
    return requested


def solve_items(req: SolveRequest | BatchRequest, config: ServeConfig) -> list[SolveItem]:
    params = SolveParams(num_samples=check_samples(req.num_samples, config, "num_samples"))
    if isinstance(req, SolveRequest):
        return [SolveItem(check_question(req.question, config, "question"), req.lang, params)]
    if not 1 <= len(req.questions) <= config.max_batch_questions:
        raise ApiError(400, f"questions: between 1 and {config.max_batch_questions} questions "
                       f"(got {len(req.questions)})", param="questions", code="invalid_value")
    return [SolveItem(check_question(q, config, f"questions.{i}"), req.lang, params)
            for i, q in enumerate(req.questions)]


def _stop(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    if len(stops) > 4:
        raise ApiError(400, "stop: at most 4 sequences", param="stop", code="invalid_value")
    return tuple(s for s in stops if s)


def _sampling(req: _Sampling, config: ServeConfig) -> SolveParams:
    if req.stream:
        raise ApiError(400, "stream: streaming is not supported; send stream: false",
                       param="stream", code="unsupported_value")
    return SolveParams(num_samples=check_samples(req.n, config, "n"),
                       temperature=req.temperature, top_p=req.top_p, seed=req.seed,
                       max_new_tokens=req.max_completion_tokens or req.max_tokens,
                       stop=_stop(req.stop), count_tokens=True)


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if all(isinstance(p, str) for p in parts):
            return "\n".join(parts)
    return ""


def chat_item(req: ChatRequest, config: ServeConfig) -> SolveItem:
    """The last user message is the question."""
    users = [m for m in req.messages if m.role == "user"]
    if not users:
        raise ApiError(400, "messages: no message with role 'user'", param="messages",
                       code="missing_field")
    question = _message_text(users[-1].content)
    param = f"messages.{req.messages.index(users[-1])}.content"
    return SolveItem(check_question(question, config, param), None, _sampling(req, config))


def completion_items(req: CompletionRequest, config: ServeConfig) -> list[SolveItem]:
    prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
    if not 1 <= len(prompts) <= config.max_batch_questions:
        raise ApiError(400, f"prompt: between 1 and {config.max_batch_questions} prompts",
                       param="prompt", code="invalid_value")
    params = _sampling(req, config)
    one = isinstance(req.prompt, str)
    return [SolveItem(check_question(p, config, "prompt" if one else f"prompt.{i}"), None, params)
            for i, p in enumerate(prompts)]


# ------------------------------------------------------------------------------ responses
_PUBLIC = ("answer", "kind", "rationale", "equation", "program", "quantities", "votes", "error")


def solve_response(model: str, result: dict[str, Any], latency_ms: float) -> dict[str, Any]:
    out = {"model": model}
    out.update({k: result[k] for k in _PUBLIC})
    out["latency_ms"] = round(latency_ms, 3)
    return out


def openai_text(sample: dict[str, Any]) -> str:
    """A sample as an OpenAI completion's text: the rationale, then ``The answer is X.``"""
    answer = sample["answer"] if sample["answer"] is not None else "unknown"
    return f"{sample['text'].rstrip()}\n{ANSWER_LINE.format(answer=answer)}".lstrip("\n")


def _usage(results: Sequence[dict[str, Any]]) -> dict[str, int]:
    prompt = sum(r["prompt_tokens"] for r in results)
    completion = sum(r["completion_tokens"] for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def chat_response(model: str, result: dict[str, Any]) -> dict[str, Any]:
    samples = result["samples"] or [{"text": "", "answer": None}]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
        "created": int(time.time()), "model": model,
        "choices": [{"index": i, "message": {"role": "assistant", "content": openai_text(s)},
                     "finish_reason": "stop", "logprobs": None}
                    for i, s in enumerate(samples)],
        "usage": _usage([result]),
    }


def completion_response(model: str, results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    choices = []
    for r in results:
        for s in r["samples"] or [{"text": "", "answer": None}]:
            choices.append({"index": len(choices), "text": openai_text(s),
                            "finish_reason": "stop", "logprobs": None})
    return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
            "created": int(time.time()), "model": model, "choices": choices,
            "usage": _usage(results)}


def models_response(names: Sequence[str], created: int) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": n, "object": "model", "created": created,
                                        "owned_by": "mathdistill"} for n in names]}
