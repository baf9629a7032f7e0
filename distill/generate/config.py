"""Typed configuration of the teacher-generation stage (``GenerateConfig``).

One model per stage, nested: the engine sections (``hf``, ``openai``, ``vllm``) hold what only
that engine reads, ``sampling`` what every engine sends. Unknown keys are errors. Ray
resources (CPUs/GPUs per actor, actors) are not repeated here: they come from the Ray side
(``RayConfig.resources["generate"]`` and ``["verify"]``, :class:`distill.config.StageResources`),
and the sandbox's limits for PoT programs from the pipeline's ``sandbox`` section; both are
passed to :func:`distill.generate.stage.generate_dataset` next to this config.

The API key of an OpenAI-compatible server is never part of a config: ``openai.api_key_env``
names the environment variable that holds it, read when the engine starts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from distill.configbase import StrictModel
from distill.equations import DEFAULT_CONSTANTS
from distill.grading import DEFAULT_REL_TOL

__all__ = [
    "GenerateConfig",
    "HFEngineConfig",
    "KPDD_MODES",
    "OpenAIEngineConfig",
    "SamplingConfig",
    "VLLMEngineConfig",
]

KPDD_MODES = ("three_calls", "two_calls", "one_call")


class SamplingConfig(StrictModel):
    """What every engine sends with each request."""

    temperature: float = Field(0.0, ge=0, le=2, description="0 is greedy decoding.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling (temperature > 0).")
    max_tokens: int = Field(512, ge=1, description="Tokens generated per call at most.")
    stop: list[str] = Field(
        default_factory=list,
        description="Stop strings added to the template's own (base prompts stop before the "
        "next 'Problem:' by themselves). Every engine cuts the stored completion before the "
        "first of them; the openai engine sends a server the first four (the OpenAI API's "
        "limit) and cuts at the others itself.",
    )
    seed: int = Field(
        0,
        description="Base seed. Each request's seed is derived from it, the problem id, the "
        "sample index and the call step, so sample k of a problem gets the same seed in every "
        "run (vllm and OpenAI-compatible servers honour per-request seeds; the hf engine seeds "
        "each generate() batch, so its samples repeat for the same batching).",
    )


class HFEngineConfig(StrictModel):
    """``hf``: transformers ``generate`` in Ray Data actors (small teachers, CPU or GPU)."""

    batch_size: int = Field(8, ge=1, description="Prompts per generate() call.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: the GPU Ray assigned the actor (resources.generate.num_gpus), "
        "else the first GPU outside Ray, else cpu."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on a GPU that supports it, else float32; float16 "
        "only on a GPU."
    )
    trust_remote_code: bool = Field(False, description="Passed to from_pretrained.")
    max_input_tokens: int | None = Field(
        None, ge=8, description="Prompts longer than this are cut from the left (None: no cut)."
    )


class OpenAIEngineConfig(StrictModel):
    """``openai``: any OpenAI-compatible server (vLLM, SGLang, a hosted API)."""

    base_url: str = Field(
        "http://127.0.0.1:8000/v1",
        description="Server URL up to and including /v1 (requests go to "
        "<base_url>/chat/completions for chat models, <base_url>/completions for base models).",
    )
    api_key_env: str | None = Field(
        "OPENAI_API_KEY",
        description="Name of the environment variable holding the API key (sent as a Bearer "
        "token; never logged or written). None, or the variable unset: no Authorization header.",
    )
    max_concurrency: int = Field(8, ge=1, description="Requests in flight per actor.")
    timeout_s: float = Field(120.0, gt=0, description="Longest wait for connecting and for "
                             "each read of a reply, seconds.")
    deadline_s: float = Field(
        600.0, gt=0, description="Longest one attempt may take from sending the request to the "
        "reply's last byte, seconds (a server that trickles bytes is cut off here; retried "
        "like a timeout)."
    )
    max_retries: int = Field(
        4, ge=0, description="Retries after the first try on 429, 5xx, timeouts, deadlines, "
        "connection errors and replies without content (other 4xx, TLS errors and malformed "
        "replies fail at once)."
    )
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles each retry.")
    backoff_max_s: float = Field(30.0, ge=0, description="Longest retry delay (also caps a "
                                 "server's Retry-After).")
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="Merged into every request body (e.g. {top_k: 20} for a vLLM server).",
    )
    check_server: bool = Field(
        True, description="Before a run, GET <base_url>/models once and refuse to start, "
        "naming the URL and what failed, when the server cannot be used."
    )

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https:// (got {v!r})")
        return v.rstrip("/")


class VLLMEngineConfig(StrictModel):
    """``vllm``: ``ray.data.llm`` with ``vLLMEngineProcessorConfig`` (GPU clusters only)."""

    tensor_parallel_size: int = Field(1, ge=1, description="Tensor-parallel workers per engine "
                                      "replica (one GPU each).")
    pipeline_parallel_size: int = Field(1, ge=1, description="Pipeline stages per replica.")
    concurrency: int = Field(
        1, ge=1, description="Engine replicas (data parallel), a fixed number; "
        "ray.resources.generate.concurrency, when set, gives it instead (they may not differ)."
    )
    batch_size: int = Field(64, ge=1, description="Rows per batch sent to an engine replica.")
    max_model_len: int = Field(4096, ge=128, description="Context length the engine allocates.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Share of GPU memory.")
    max_concurrent_batches: int = Field(8, ge=1, description="Batches in flight per replica.")
    accelerator_type: str | None = Field(None, description="e.g. 'A10G', 'H100'; None: any GPU.")
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Further vLLM engine arguments (merged last)."
    )


class GenerateConfig(StrictModel):
    """The teacher-generation stage: which strategy, which engine and model, how many samples."""

    strategy: str = Field(
        "pot",
        description="cot, pot, kpdd_cot, kpdd_pot, fltt_equation, fltt_masked_equation, "
        "fdd_harder, fdd_similar (see `distill.generate.strategies`).",
    )
    engine: str = Field("openai", description="hf, openai or vllm.")
    model: str = Field(..., description="Model name (server / hub) or local folder.")
    chat: bool | None = Field(
        None,
        description="Chat prompts (messages, chat template) or plain base-model prompts. "
        "None: openai -> chat; hf / vllm -> chat when the tokenizer has a chat template.",
    )
    samples: int = Field(1, ge=1, description="Samples per problem (sample_idx 0..k-1).")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    num_demos: int | None = Field(
        None, ge=0, description="Few-shot demonstrations per prompt; None: all in the template."
    )
    kpdd_mode: Literal["three_calls", "two_calls", "one_call"] = Field(
        "three_calls",
        description="KPDD: 'three_calls' (core question, problem-solving information, "
        "solution), 'two_calls' (key points merged in one call, then solution) or 'one_call'.",
    )
    format_fix: bool = Field(
        True, description="FLTT: send an equation that does not parse back for repair once."
    )
    prompts_dir: str | None = Field(
        None, description="Folder of prompt templates replacing the shipped ones (same names)."
    )
    constants: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CONSTANTS),
        description="Numbers an equation may use without finding them in the problem.",
    )
    rel_tol: float = Field(DEFAULT_REL_TOL, gt=0, lt=0.1, description="Answer tolerance.")
    batch_size: int = Field(
        32, ge=1,
        description="Rows per Ray Data batch; each verified batch is committed as one shard.",
    )
    stop_after_failures: int | None = Field(
        20, ge=1,
        description="Stop the run after this many consecutive rows whose generation failed "
        "with the same kind of error (e.g. HTTP 422 for every request); the engine stops "
        "sending such requests too. None: never stop early.",
    )
    hf: HFEngineConfig = Field(default_factory=HFEngineConfig)
    openai: OpenAIEngineConfig = Field(default_factory=OpenAIEngineConfig)
    vllm: VLLMEngineConfig = Field(default_factory=VLLMEngineConfig)

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, v: str) -> str:
        from distill.generate.strategies import get_strategy

        get_strategy(v)  # raises ValueError naming the valid strategies
        return v

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, v: str) -> str:
        from distill.generate.engines import get_engine_class

        get_engine_class(v)
        return v

    @field_validator("constants")
    @classmethod
    def _numeric_constants(cls, v: list[str]) -> list[str]:
        from distill.quantities import numeric_texts

        return numeric_texts(v)

    @model_validator(mode="after")
    def _model_named(self) -> GenerateConfig:
        if not self.model or not self.model.strip():
            raise ValueError("model must be a non-empty model name or folder")
        return self

    def fingerprint(self) -> dict[str, Any]:
        """What decides a row's content and which rows a run makes: a re-run into the same
        output must match it (the stage adds the problem set and the sandbox's limits).

        Batch sizes, concurrency, timeouts and retries, the server URL and the early stop are
        left out: they change how rows are produced, not what a row is."""
        from distill.generate.strategies import get_strategy

        strategy = get_strategy(self.strategy)
        return {
            "strategy": self.strategy,
            "engine": self.engine,
            "model": self.model,
            "chat": self.chat,
            "samples": self.samples,
            "sampling": self.sampling.model_dump(mode="json"),
            "num_demos": self.num_demos,
            "kpdd_mode": self.kpdd_mode if strategy.family == "kpdd" else None,
            "format_fix": self.format_fix if strategy.family == "fltt" else None,
            "constants": self.constants,
            "rel_tol": self.rel_tol,
            "templates": strategy.template_digest(self),
        }
