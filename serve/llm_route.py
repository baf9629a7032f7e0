"""The GPU route for causal students: ``ray.serve.llm`` (vLLM) behind an OpenAI-compatible app.

This route serves the student's *raw text* at vLLM's speed; it does not read answers (no
equation evaluation, no sandbox) -- ``mathdistill serve`` does that. vLLM no longer serves
encoder-decoder models, so T5 students (the quickstart's) are refused here: serve them with
``mathdistill serve``.

* :func:`llm_config_for` -- a student spec + :class:`ServeConfig` -> the keyword arguments of
  ``ray.serve.llm.LLMConfig`` (plain data; built and checked on CPU, never importing vLLM).
* :func:`build_llm_app` -- the Serve builder (``import_path: serve.llm_route:build_llm_app``,
  ``args: {runs: [...], serve: {...}, accelerator_type: "L4"}``) for a GPU cluster with the
  ``gpu`` extra installed; imports ``ray.serve.llm`` when called.
"""

from __future__ import annotations

from typing import Any

from distill.configbase import ConfigError
from distill.train.students import is_encoder_decoder
from serve.config import ServeConfig
from serve.solver import StudentSpec

__all__ = ["build_llm_app", "is_encoder_decoder", "llm_config_for"]


def llm_config_for(spec: StudentSpec, config: ServeConfig,
                   accelerator_type: str | None = None) -> dict[str, Any]:
    """``LLMConfig(**result)`` for one causal student: its checkpoint as the model source, the
    replicas / autoscaling and request limits of ``config``, decoding length from the spec."""
    if is_encoder_decoder(spec.checkpoint):
        raise ConfigError(f"{spec.source}: an encoder-decoder student (T5, tree): vLLM cannot serve "
                          "it; use `mathdistill serve`")
    inference = spec.inference_config()
    deployment: dict[str, Any] = {"max_ongoing_requests": config.max_ongoing_requests}
    if config.replicas == "auto":
        deployment["autoscaling_config"] = config.autoscaling.model_dump()
    else:
        deployment["autoscaling_config"] = {"min_replicas": config.replicas,
                                            "max_replicas": config.replicas}
    result: dict[str, Any] = {
        "model_loading_config": {"model_id": spec.name, "model_source": spec.checkpoint},
        "deployment_config": deployment,
        "engine_kwargs": {"max_model_len": inference.max_source_length
                          + inference.max_new_tokens,
                          "dtype": "auto" if inference.dtype == "auto" else inference.dtype},
    }
    if accelerator_type:
        result["accelerator_type"] = accelerator_type
    return result


def build_llm_app(args: dict[str, Any]):  # pragma: no cover - needs vLLM and a GPU
    """Serve builder for the vLLM route (GPU clusters with ``mathdistill[gpu]``)."""
    from ray.serve.llm import LLMConfig, build_openai_app

    from serve.app import AppArgs, serve_config_for, specs_for

    accelerator = args.pop("accelerator_type", None)
    parsed = AppArgs.model_validate(args)
    config = parsed.serve or serve_config_for(parsed.runs, parsed.config)
    configs = [LLMConfig(**llm_config_for(s, config, accelerator)) for s in specs_for(parsed.runs)]
    return build_openai_app({"llm_configs": configs})
