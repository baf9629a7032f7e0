"""``vllm``: ``ray.data.llm`` processors with ``vLLMEngineProcessorConfig`` (GPU clusters).

Checked against ray 2.60.0 (its ``ray.data.llm.build_processor``) with vllm 0.33.0, the pair
pinned by the ``gpu`` extra. The engine is dataset-level: :func:`run_dataset` maps the work
items of a Ray Dataset through one processor per strategy round:

1. ``prepare_round`` renders each row's next call (the strategy decides; templates as for every
   engine) into a ``_request`` JSON (``messages`` for chat models, ``prompt`` for base models,
   and the row's own ``sampling_params``: temperature, top_p, max_tokens, stop and a
   per-row ``seed``), or marks the row finished;
2. the processor (chat template -> tokenize -> vLLM engine -> detokenize) generates; its
   ``preprocess`` unpacks ``_request``; ``should_continue_on_error`` keeps a failed row, whose
   ``__inference_error__`` becomes the call's error (retried by the next run of the stage);
3. ``absorb_round`` appends the call (text, token counts, engine time) to the row's ``calls``.

k samples per problem are k rows with their own seeds (the processor keeps only the first
completion when n > 1). Multi-call strategies (KPDD, FLTT's format fix) materialize the
dataset after each round, so one round's engines are released before the next round's start
(otherwise both rounds would hold GPUs at once); the stage feeds them ``vllm.chunk_rows``
items at a time so finished chunks are committed as they complete.

On a machine without a GPU the processor can be built and its stages inspected (the tests do),
but not run.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from distill.teachers.engines import register_engine, sent_prompt, stop_strings

if TYPE_CHECKING:
    from distill.teachers.config import GenerateConfig

__all__ = ["VLLMEngine", "absorb_round", "build_processor", "prepare_round", "preprocess",
           "processor_config", "resolve_chat", "run_dataset"]


@register_engine("vllm")
class VLLMEngine:
    """Dataset-level: see :func:`run_dataset`. There is no in-process ``generate``."""

    dataset_level = True

    def __init__(self, config: GenerateConfig) -> None:
        raise TypeError("the vllm engine runs over a whole Ray Dataset: use "
                        "distill.teachers.engines.vllm.run_dataset (generate_dataset does)")

    @staticmethod
    def run_dataset(ds, config: GenerateConfig, chat: bool):
        return run_dataset(ds, config, chat)

    @staticmethod
    def resolve_chat(config: GenerateConfig) -> bool:
        return resolve_chat(config)


def resolve_chat(config: GenerateConfig) -> bool:
    """``config.chat``, or whether the model's tokenizer has a chat template."""
    if config.chat is not None:
        return config.chat
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(
        config.model, trust_remote_code=bool(config.vllm.engine_kwargs.get("trust_remote_code")))
    return bool(getattr(tok, "chat_template", None))


def processor_config(config: GenerateConfig, chat: bool):
    """The ``vLLMEngineProcessorConfig`` for this stage."""
    from ray.data.llm import vLLMEngineProcessorConfig

    v = config.vllm
    engine_kwargs = {
        "tensor_parallel_size": v.tensor_parallel_size,
        "pipeline_parallel_size": v.pipeline_parallel_size,
        "max_model_len": v.max_model_len,
        "gpu_memory_utilization": v.gpu_memory_utilization,
        **v.engine_kwargs,
    }
    return vLLMEngineProcessorConfig(
        model_source=config.model,
        engine_kwargs=engine_kwargs,
        concurrency=v.concurrency,
        batch_size=v.batch_size,
        max_concurrent_batches=v.max_concurrent_batches,
        accelerator_type=v.accelerator_type,
        should_continue_on_error=True,
        chat_template_stage=chat,
        tokenize_stage=True,
        detokenize_stage=True,
    )


def preprocess(row: dict[str, Any]) -> dict[str, Any]:
    """The processor's preprocess: the row's ``_request`` as the engine's input columns."""
    req = json.loads(row["_request"])
    out: dict[str, Any] = {"sampling_params": req["sampling_params"]}
    if "messages" in req:
        out["messages"] = req["messages"]
    else:
        out["prompt"] = req["prompt"]
    return out


def build_processor(config: GenerateConfig, chat: bool):
    """A ``ray.data.llm`` Processor for one round (identity postprocess: every column is kept
    and :func:`absorb_round` reads the engine's output columns)."""
    from ray.data.llm import build_processor as _build

    return _build(processor_config(config, chat), preprocess=preprocess)


@lru_cache(maxsize=8)
def _config(config_json: str) -> GenerateConfig:
    from distill.teachers.config import GenerateConfig

    return GenerateConfig.model_validate_json(config_json)


def prepare_round(row: dict[str, Any], config_json: str, chat: bool) -> dict[str, Any]:
    """Render the row's next call into ``_request`` / ``_call``; ``_active`` False when done."""
    from distill.teachers.generate import ITEM_COLUMNS, next_request
    from distill.teachers.strategies import get_strategy

    config = _config(config_json)
    calls = json.loads(row.get("calls") or "[]")
    out = {c: row[c] for c in ITEM_COLUMNS}
    out["quantities"] = list(out["quantities"] or [])
    out["calls"] = json.dumps(calls, ensure_ascii=False)
    nxt = next_request(row, calls, get_strategy(config.strategy), config)
    if nxt is None:
        out.update(_active=False, _request="", _call="")
        return out
    call, prompt, seed = nxt
    s = config.sampling
    sampling_params: dict[str, Any] = {"temperature": s.temperature, "top_p": s.top_p,
                                       "max_tokens": s.max_tokens, "seed": seed}
    stops = stop_strings(prompt, s, chat)
    if stops:
        sampling_params["stop"] = stops
    request: dict[str, Any] = {"sampling_params": sampling_params}
    if chat:
        request["messages"] = list(prompt.messages)
    else:
        request["prompt"] = prompt.text
    out.update(
        _active=True,
        _request=json.dumps(request, ensure_ascii=False),
        _call=json.dumps({"step": call.step, "template": call.template, "seed": seed,
                          "sent": sent_prompt(prompt, chat)}, ensure_ascii=False),
    )
    return out


def absorb_round(row: dict[str, Any]) -> dict[str, Any]:
    """Append the engine's answer (or its error) to the row's ``calls``."""
    from distill.teachers.generate import ITEM_COLUMNS

    call = json.loads(row["_call"])
    error = row.get("__inference_error__") or None
    text = row.get("generated_text")
    took = row.get("time_taken_llm")
    record = {
        **call,
        "completion": None if error else (text or ""),
        "error": f"vllm: {error}" if error else None,
        "tokens_in": int(row.get("num_input_tokens") or 0),
        "tokens_out": int(row.get("num_generated_tokens") or 0),
        "latency_s": float(took) if isinstance(took, (int, float)) and took >= 0 else 0.0,
        "finish_reason": None,
    }
    calls = json.loads(row.get("calls") or "[]") + [record]
    out = {c: row[c] for c in ITEM_COLUMNS}
    out["quantities"] = list(out["quantities"] or [])
    out["calls"] = json.dumps(calls, ensure_ascii=False)
    return out


def _strip(row: dict[str, Any]) -> dict[str, Any]:
    from distill.teachers.generate import ITEM_COLUMNS

    out = {c: row[c] for c in ITEM_COLUMNS}
    out["quantities"] = list(out["quantities"] or [])
    out["calls"] = row["calls"]
    return out


def run_dataset(ds, config: GenerateConfig, chat: bool):
    """Work items in, the same items with their ``calls`` (JSON) out, through vLLM."""
    from functools import partial

    from distill.teachers.strategies import get_strategy

    strategy = get_strategy(config.strategy)
    config_json = config.model_dump_json()
    prepare = partial(prepare_round, config_json=config_json, chat=chat)
    for r in range(strategy.max_calls):
        ds = ds.map(prepare)
        if r == 0:  # every row has a first call
            ds = build_processor(config, chat)(ds).map(absorb_round)
        else:
            active = ds.filter(lambda row: bool(row["_active"]))
            idle = ds.filter(lambda row: not row["_active"]).map(_strip)
            ds = build_processor(config, chat)(active).map(absorb_round).union(idle)
        if strategy.max_calls > 1:
            ds = ds.materialize()
    return ds
