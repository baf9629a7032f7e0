"""Teacher engines behind one small interface, chosen by name in the config.

An engine turns prompts into completions. The in-process ones implement :class:`Engine`
(``generate(requests, sampling) -> results``, one result per request in order, never raising
for a failed request: the result carries the error) and run inside Ray Data actors built once
per actor:

* ``hf`` (:mod:`.hf`) -- transformers ``generate``, batched, CPU or GPU;
* ``openai`` (:mod:`.openai`) -- an OpenAI-compatible HTTP server, bounded concurrency,
  retries with backoff, per-request timeout.

``vllm`` (:mod:`.vllm`) is dataset-level: ``ray.data.llm`` processors over the whole Ray
Dataset (``dataset_level = True``); it has no in-process ``generate``.

Registry: :func:`register_engine` (a duplicate name raises), :func:`get_engine_class` (an
unknown name raises :class:`UnknownEngineError` listing the valid ones), :func:`build_engine`.
Engines import torch / transformers / vllm only when built. An engine class may have a
``check_ready(config)`` static method that the stage calls once before a run (the openai
engine asks its server for ``/models``); it raises :class:`TeacherUnavailableError`.

Failed requests carry an error text that starts with its *kind* (``"HTTP 500: ..."``,
``"connection error (ConnectionRefusedError): ..."``): :func:`error_kind` reads it back, so
the stage can count failures by kind and stop a run whose requests all fail the same way.
Stop strings are cut from completions by one function, :func:`truncate_at_stop`, for every
engine (servers and vLLM's detokenizer may leave them in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar, Protocol, Sequence

from distill.generate.templates import Prompt
from distill.registry import Registry

if TYPE_CHECKING:
    from distill.generate.config import GenerateConfig, SamplingConfig

__all__ = [
    "Engine",
    "GenRequest",
    "GenResult",
    "TeacherUnavailableError",
    "UnknownEngineError",
    "build_engine",
    "engine_names",
    "error_kind",
    "get_engine_class",
    "register_engine",
]


@dataclass(frozen=True)
class GenRequest:
    """One completion to make: the prompt (both forms; the engine sends the one it uses) and
    the request's seed."""

    prompt: Prompt
    seed: int = 0


@dataclass
class GenResult:
    """A completion (``text``) or a failure (``error``, text None) with its costs. ``sent`` is
    the prompt as sent (a chat's messages as JSON, or the base text)."""

    text: str | None
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    finish_reason: str | None = None
    sent: str | None = None


class Engine(Protocol):
    """An in-process engine (built once per Ray actor from a GenerateConfig)."""

    name: ClassVar[str]
    dataset_level: ClassVar[bool]
    chat: bool  # resolved: chat messages (True) or base prompt text (False)

    def generate(self, requests: Sequence[GenRequest], sampling: SamplingConfig) -> list[GenResult]:
        ...

    def close(self) -> None:
        ...


class UnknownEngineError(ValueError):
    pass


class TeacherUnavailableError(RuntimeError):
    """The teacher cannot be used at all (checked once before a run): the message names what
    was tried (the URL) and what failed."""


_REGISTRY: Registry[type] = Registry("engine", UnknownEngineError)


def register_engine(name: str) -> Callable[[type], type]:
    """Class decorator: register an engine class under ``name`` (a duplicate name raises)."""
    return _REGISTRY.decorator(name)


def get_engine_class(name: str) -> type:
    """The engine class registered as ``name``; an unknown name raises UnknownEngineError."""
    return _REGISTRY.get(name)


def engine_names() -> list[str]:
    return _REGISTRY.names()


def build_engine(config: GenerateConfig) -> Engine:
    """The in-process engine the config names (loads the model / opens the client)."""
    cls = get_engine_class(config.engine)
    if getattr(cls, "dataset_level", False):
        raise ValueError(f"engine {config.engine!r} runs over a whole Ray Dataset; "
                         "use distill.generate.stage.generate_dataset")
    return cls(config)


def sent_prompt(prompt: Prompt, chat: bool) -> str:
    """The prompt as an engine sends it, for the Rationale's ``prompt`` column."""
    import json

    return json.dumps(list(prompt.messages), ensure_ascii=False) if chat else prompt.text


def stop_strings(prompt: Prompt, sampling: SamplingConfig, chat: bool) -> list[str]:
    """Stop strings of a request: the template's (base prompts only) then the config's."""
    out: list[str] = []
    for s in (() if chat else prompt.stop) + tuple(sampling.stop):
        if s and s not in out:
            out.append(s)
    return out


def error_kind(error: str | None) -> str:
    """The kind of a failed request's error text: what comes before its first ``": "``
    (``"HTTP 500"``, ``"timeout"``, ``"connection error (ConnectionRefusedError)"``, ...)."""
    if not error:
        return "unknown"
    return error.split(": ", 1)[0].strip()[:80] or "unknown"


def truncate_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` cut before the first stop string, and whether it was cut."""
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if 0 <= i < cut:
            cut = i
    return text[:cut], cut < len(text)


from distill.generate.engines import hf, openai, vllm  # noqa: E402,F401  (register)
