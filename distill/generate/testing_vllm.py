"""The ``vllm`` engine on CPU, for tests: its real processor with the vLLM engine stage scripted.

:func:`scripted_vllm_processor` builds the processor the production code builds
(:func:`distill.generate.engines.vllm.processor_config` -> ``ray.data.llm.build_processor``:
chat template, tokenizer, vLLM engine, detokenizer, on a local model folder such as
:func:`distill.generate.testing.build_tiny_lm` writes) and replaces only its engine stage by
:class:`ScriptedEngineStage`, a CPU stage behind the same interface: it requires the engine's
input column (``sampling_params``, with ``prompt`` / ``tokenized_prompt``) and gives the
engine's output columns (``prompt``, ``prompt_token_ids``, ``num_input_tokens``,
``generated_tokens``, ``generated_text``, ``num_generated_tokens``, ``time_taken_llm``,
``params``, ``__inference_error__``, ...) from scripted replies. Like vLLM it stops at a stop
string whose tokens are generated but whose text is not returned (Ray's detokenizer then
decodes the tokens, stop string included) and cuts at ``max_tokens``. A reply starting
``!error:`` fails its row the way vLLM's stage does with ``should_continue_on_error``.

It asks no GPU and keeps the real stage's actor pool (replica count, ``max_concurrency``,
batch size), so :func:`~distill.generate.engines.vllm.run_dataset` runs end to end on CPU with
``processor_factory=functools.partial(scripted_vllm_processor, replies=...)``.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from ray.llm._internal.batch.stages.base import StatefulStage, StatefulStageUDF
from ray.llm._internal.batch.stages.common import maybe_convert_ndarray_to_list

__all__ = ["ScriptedEngineStage", "ScriptedEngineUDF", "scripted_vllm_processor"]

Script = list[tuple[tuple[str, ...], str]]  # (needles, reply): first entry whose needles all match


class ScriptedEngineUDF(StatefulStageUDF):
    """Each row's reply is the first script entry whose needles all occur in the prompt after
    its last ``Problem:``; ``log_path`` gets a line per engine built (tests count replicas)."""

    def __init__(self, data_column: str, expected_input_keys: list[str], model: str,
                 replies: Script, log_path: str | None = None):
        from transformers import AutoTokenizer

        super().__init__(data_column, expected_input_keys)
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.replies = [(tuple(n), r) for n, r in replies]
        if log_path:
            with open(log_path, "a", encoding="utf-8") as f:
                f.write("engine built\n")

    def reply(self, prompt: str) -> str:
        tail = prompt.rsplit("Problem:", 1)[-1]
        for needles, text in self.replies:
            if all(n in tail for n in needles):
                return text
        return "!error: no scripted reply for this prompt"

    def _generate(self, text: str, params: dict[str, Any]) -> tuple[list[int], str]:
        stops = [(i, s) for s in params.get("stop") or [] if (i := text.find(s)) >= 0]
        kept, through = text, text
        if stops:
            i, s = min(stops)
            kept, through = text[:i], text[:i + len(s)]
        tokens = self.tokenizer.encode(through, add_special_tokens=False)
        limit = int(params.get("max_tokens") or len(tokens))
        if len(tokens) > limit:
            tokens = tokens[:limit]
            kept = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return tokens, kept

    async def udf(self, batch: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        for row in batch:
            idx = row[self.IDX_IN_BATCH_COLUMN]
            row = maybe_convert_ndarray_to_list(row)  # Ray's own map stages pass numpy arrays
            prompt = row.pop("prompt", None)
            ids = row.pop("tokenized_prompt", None)
            if prompt is None:
                prompt = self.tokenizer.decode(ids)
            ids = list(ids) if ids is not None else self.tokenizer.encode(prompt)
            params = dict(row.pop("sampling_params"))
            text = self.reply(prompt)
            out = {self.IDX_IN_BATCH_COLUMN: idx, "prompt": prompt, "request_id": idx,
                   "batch_uuid": "scripted", "params": json.dumps(params), "metrics": None,
                   "embeddings": None, "logprobs": None, "prompt_logprobs": None}
            if text.startswith("!error:"):
                yield {**out, "prompt_token_ids": None, "num_input_tokens": 0,
                       "generated_tokens": [], "generated_text": "", "num_generated_tokens": 0,
                       "time_taken_llm": -1,
                       "__inference_error__": "RuntimeError: " + text[len("!error:"):].strip()}
                continue
            tokens, kept = self._generate(text, params)
            yield {**out, "prompt_token_ids": ids, "num_input_tokens": len(ids),
                   "generated_tokens": tokens, "generated_text": kept,
                   "num_generated_tokens": len(tokens), "time_taken_llm": 0.001,
                   "__inference_error__": ""}


class ScriptedEngineStage(StatefulStage):
    """The engine stage on CPU (see the module docstring)."""

    fn: type = ScriptedEngineUDF

    def get_required_input_keys(self) -> dict[str, str]:
        return {"sampling_params": "The sampling parameters (a dict)."}


def scripted_vllm_processor(config, chat: bool, resources=None, *, replies: Script,
                            log_path: str | None = None):
    """The vllm engine's processor for ``config`` with its engine stage scripted (no GPU)."""
    from ray.data.llm import build_processor
    from ray.llm._internal.batch.processor.base import Processor

    from distill.generate.engines import vllm

    real = build_processor(vllm.processor_config(config, chat, resources), preprocess=vllm.preprocess)
    engine = real.get_stage_by_name("vLLMEngineStage")
    kwargs = {k: v for k, v in engine.map_batches_kwargs.items()
              if k not in ("num_gpus", "accelerator_type", "ray_remote_args_fn", "resources")}
    kwargs["num_cpus"] = min(float(kwargs.get("num_cpus") or 1.0), 1.0)
    fake = ScriptedEngineStage(fn_constructor_kwargs={"model": config.model, "replies": replies,
                                                      "log_path": log_path},
                               map_batches_kwargs=kwargs)
    stages = [fake if name == "vLLMEngineStage" else stage for name, stage in real.stages.items()]
    return Processor(real.config, stages, preprocess=vllm.preprocess)
