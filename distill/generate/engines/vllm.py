"""``vllm``: ``ray.data.llm``'s vLLM processor (``vLLMEngineProcessorConfig``), GPU clusters.

Checked against ray 2.60.0 (``ray.data.llm.build_processor`` and the stages it builds), whose
``llm`` extra pins vllm 0.29.0 -- the pair the ``gpu`` extra (``ray[llm]==2.60.0``) installs.
The engine is dataset-level: :func:`run_dataset` takes a Ray Dataset of work items and gives
the same items with their ``calls`` (JSON).

**One set of engine replicas per stage run.** A Ray Data map stage starts its own actors each
time a dataset runs, so running the processor once per strategy round (and per chunk of rows)
would load the model again each time. Instead the processor is built once
(:func:`build_processor`, or the ``processor_factory`` a test gives) and its stages -- chat
template, tokenizer, the vLLM engine, detokenizer -- are hosted together in one actor pool
(:class:`RoundsUDF`) with the engine stage's own Ray arguments (GPUs, placement group,
accelerator type, replica count, ``max_concurrency``). Each actor builds the stages once; each
batch of work items goes through every round of its strategy inside the actor:

1. :func:`prepare_round` renders each row's next call (the strategy decides; templates as for
   every engine) into a ``_request`` JSON (``messages`` for chat models, ``prompt`` for base
   models, and the row's own ``sampling_params``: temperature, top_p, max_tokens, stop and a
   per-row ``seed``), or marks the row finished;
2. the processor's stages generate, in order, exactly as Ray chains them (its ``preprocess``
   unpacks ``_request``; ``should_continue_on_error`` keeps a failed row, whose
   ``__inference_error__`` becomes the call's error, retried by the next run of the stage);
3. :func:`absorb_round` appends the call (text cut at its stop strings, token counts, engine
   time) to the row's ``calls``.

Batches overlap inside an actor (``max_concurrent_batches``), so the engine stays fed while
one batch waits for its next round, and finished batches stream on to verification and are
committed as they complete. k samples per problem are k rows with their own seeds.

Ray resources (:func:`processor_config`): ``ray.resources.generate`` describes one engine
replica -- ``num_gpus`` its GPUs (``vllm.tensor_parallel_size`` x ``pipeline_parallel_size``
workers of one GPU each; below 1 shares a GPU when that product is 1; 0, the default, is one
GPU per worker), ``num_cpus`` its CPUs (both through Ray's ``placement_group_config``
``bundle_per_worker``), ``memory_gb`` its memory (one-worker replicas) and ``concurrency``
the number of replicas, fixed: ray 2.60 reads an int ``concurrency`` as an autoscaling range
1..n, so ``(n, n)`` is passed. ``vllm.accelerator_type`` pins a GPU type. What the project's
one translator (:mod:`distill.resources`) covers comes from it -- the replica count
(:meth:`~distill.resources.StageResources.pool_size`, default ``vllm.concurrency``), the
memory (:meth:`~distill.resources.StageResources.ray_args`); the per-worker bundles of a
tensor / pipeline parallel replica are vLLM's own and stay here. The config crosses into the
engine actors as ``model_dump(mode="json")``, as every stage's does.

On a machine without a GPU the processor can be built and its stages inspected, and
:func:`run_dataset` runs with the engine stage replaced by a CPU stage behind the same
interface (the tests do); only the real vLLM call needs a GPU.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Mapping

from distill.generate.engines import register_engine, sent_prompt, stop_strings, truncate_at_stop
from distill.resources import resources_or_default

if TYPE_CHECKING:
    from distill.resources import StageResources
    from distill.generate.config import GenerateConfig

__all__ = ["RoundsUDF", "VLLMEngine", "absorb_round", "build_processor", "engine_actor_spec",
           "engine_memory", "prepare_round", "preprocess", "processor_config", "replicas",
           "resolve_chat", "run_dataset"]

ENGINE_INPUT = "sampling_params"  # the engine stage is the one that requires this column


@register_engine("vllm")
class VLLMEngine:
    """Dataset-level: see :func:`run_dataset`. There is no in-process ``generate``."""

    dataset_level = True

    def __init__(self, config: GenerateConfig) -> None:
        raise TypeError("the vllm engine runs over a whole Ray Dataset: use "
                        "distill.generate.engines.vllm.run_dataset (generate_dataset does)")

    @staticmethod
    def run_dataset(ds, config: GenerateConfig, chat: bool,
                    resources: StageResources | None = None):
        return run_dataset(ds, config, chat, resources=resources)

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


# ------------------------------------------------------------------------------ resources
def replicas(config: GenerateConfig, resources: StageResources | None) -> int:
    """Engine replicas: the stage's pool size (:meth:`StageResources.pool_size`:
    ``resources.concurrency`` when set, else ``vllm.concurrency``); both given and different
    is an error."""
    v = config.vllm
    res = resources_or_default(resources)
    if (res.concurrency is not None and "concurrency" in v.model_fields_set
            and v.concurrency != res.concurrency):
        raise ValueError(
            f"generate.vllm.concurrency is {v.concurrency} but ray.resources.generate.concurrency "
            f"is {res.concurrency}: both set the number of vLLM engine replicas; give one")
    return res.pool_size(default=v.concurrency)


def _workers_per_replica(config: GenerateConfig) -> int:
    return config.vllm.tensor_parallel_size * config.vllm.pipeline_parallel_size


def _placement(config: GenerateConfig, resources: StageResources | None) -> dict[str, Any] | None:
    """``placement_group_config`` for one replica from ``resources`` (None: Ray's default of
    one GPU and one CPU per TP x PP worker)."""
    if resources is None:
        return None
    n = _workers_per_replica(config)
    gpus = float(resources.num_gpus or 0.0)
    if not gpus:
        per_worker_gpu = 1.0
    elif n == 1 and gpus <= 1:
        per_worker_gpu = gpus
    elif gpus == n:
        per_worker_gpu = 1.0
    else:
        raise ValueError(
            f"ray.resources.generate.num_gpus is {gpus:g} GPUs per vLLM engine replica, but a "
            f"replica is generate.vllm.tensor_parallel_size x pipeline_parallel_size = {n} "
            f"worker(s) of one GPU each: set num_gpus to {n}"
            + (" (or below 1 to share a GPU)" if n == 1 else ""))
    bundle: dict[str, float] = {"GPU": per_worker_gpu}
    if resources.num_cpus:
        bundle["CPU"] = float(resources.num_cpus) / n
    return {"bundle_per_worker": bundle, "strategy": "PACK"}


def engine_memory(config: GenerateConfig, resources: StageResources | None) -> int | None:
    """Bytes of memory one engine actor reserves (``resources.memory_gb``), or None. Ray
    2.60's vLLM processor has no memory field for the engine, and a placement-group bundle
    cannot carry memory on one-GPU replicas, so it is asked on the actor, which only a
    one-worker replica is (TP/PP replicas are placement groups: refused)."""
    memory = resources.ray_args().get("memory") if resources is not None else None
    if memory is None:
        return None
    if _workers_per_replica(config) > 1:
        raise ValueError("ray.resources.generate.memory_gb cannot be reserved for a vLLM replica "
                         "of several workers (tensor/pipeline parallel > 1); leave it unset")
    return memory


def processor_config(config: GenerateConfig, chat: bool, resources: StageResources | None = None):
    """The ``vLLMEngineProcessorConfig`` for this stage: the ``vllm`` section, the replica's
    resources (``resources``: the pipeline's ``ray.resources.generate``, see the module
    docstring) and a fixed replica count."""
    from ray.data.llm import vLLMEngineProcessorConfig

    v = config.vllm
    engine_kwargs = {
        "tensor_parallel_size": v.tensor_parallel_size,
        "pipeline_parallel_size": v.pipeline_parallel_size,
        "max_model_len": v.max_model_len,
        "gpu_memory_utilization": v.gpu_memory_utilization,
        **v.engine_kwargs,
    }
    n = replicas(config, resources)
    return vLLMEngineProcessorConfig(
        model_source=config.model,
        engine_kwargs=engine_kwargs,
        concurrency=(n, n),  # an int n would be an autoscaling pool of 1..n replicas
        batch_size=v.batch_size,
        max_concurrent_batches=v.max_concurrent_batches,
        accelerator_type=v.accelerator_type,
        placement_group_config=_placement(config, resources),
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


def build_processor(config: GenerateConfig, chat: bool, resources: StageResources | None = None):
    """The ``ray.data.llm`` Processor of a stage run (identity postprocess: every column is
    kept and :func:`absorb_round` reads the engine's output columns)."""
    from ray.data.llm import build_processor as _build

    return _build(processor_config(config, chat, resources), preprocess=preprocess)


# ------------------------------------------------------------------------------- rounds
def prepare_round(row: dict[str, Any], config: GenerateConfig, chat: bool) -> dict[str, Any]:
    """Render the row's next call into ``_request`` / ``_call``; ``_active`` False when done."""
    from distill.generate.core import ITEM_COLUMNS, next_request
    from distill.generate.strategies import get_strategy

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


_TYPED_ERROR = re.compile(r"^[A-Za-z_][\w.]*: ")


def absorb_round(row: dict[str, Any]) -> dict[str, Any]:
    """Append the engine's answer (or its error) to the row's ``calls``. The completion is cut
    before the first of the request's stop strings (Ray's detokenize stage decodes every
    generated token, the stop string's included)."""
    from distill.generate.core import ITEM_COLUMNS

    call = json.loads(row["_call"])
    error = row.get("__inference_error__") or None
    text = row.get("generated_text") or ""
    took = row.get("time_taken_llm")
    finish = None
    if not error:
        stops = json.loads(row["_request"])["sampling_params"].get("stop") or []
        text, cut = truncate_at_stop(text, stops)
        finish = "stop" if cut else None
    record = {
        **call,
        "completion": None if error else text,
        # Ray writes "<ExceptionType>: <message>": the kind is "vllm <ExceptionType>"
        "error": (f"vllm {error}" if _TYPED_ERROR.match(error) else f"vllm: {error}") if error else None,
        "tokens_in": int(row.get("num_input_tokens") or 0),
        "tokens_out": int(row.get("num_generated_tokens") or 0),
        "latency_s": float(took) if isinstance(took, (int, float)) and took >= 0 else 0.0,
        "finish_reason": finish,
    }
    calls = json.loads(row.get("calls") or "[]") + [record]
    out = {c: row[c] for c in ITEM_COLUMNS}
    out["quantities"] = list(out["quantities"] or [])
    out["calls"] = json.dumps(calls, ensure_ascii=False)
    return out


def _strip(row: dict[str, Any]) -> dict[str, Any]:
    from distill.generate.core import ITEM_COLUMNS

    out = {c: row[c] for c in ITEM_COLUMNS}
    out["quantities"] = list(out["quantities"] or [])
    out["calls"] = row["calls"]
    return out


# ----------------------------------------------------------------------- the engine pool
StageSpec = tuple[type, dict[str, Any]]  # (stage UDF class, its constructor kwargs)


def engine_actor_spec(processor) -> tuple[list[StageSpec], dict[str, Any]]:
    """A processor's stages as (UDF class, constructor kwargs), in order, and the
    ``map_batches`` arguments of its engine stage (the stage requiring ``sampling_params``:
    actor pool, GPUs, placement group, accelerator type, ``max_concurrency``, batch size)."""
    data_column = processor.DATA_COLUMN
    batch_size = processor.config.batch_size
    specs: list[StageSpec] = []
    engine_kwargs: dict[str, Any] | None = None
    for stage in processor.stages.values():
        kw = stage.get_dataset_map_batches_kwargs(batch_size=batch_size, data_column=data_column)
        specs.append((stage.fn, kw.pop("fn_constructor_kwargs")))
        if ENGINE_INPUT in stage.get_required_input_keys():
            engine_kwargs = kw
    if engine_kwargs is None:
        raise ValueError(f"the processor has no engine stage (no stage requires {ENGINE_INPUT!r}): "
                         f"{processor.list_stage_names()}")
    engine_kwargs.pop("zero_copy_batch", None)  # batches are Arrow tables read into rows here
    return specs, engine_kwargs


class RoundsUDF:
    """One engine replica: the processor's stages built once, and every round of a batch of
    work items run through them (see the module docstring). An async ``map_batches`` UDF, so
    batches overlap in the actor as they do in Ray's own engine stage."""

    def __init__(self, config: Mapping[str, Any], chat: bool, stages: list[StageSpec],
                 data_column: str, preprocess: Callable, postprocess: Callable):
        from distill.generate.config import GenerateConfig
        from distill.generate.strategies import get_strategy

        self.config = GenerateConfig.model_validate(dict(config))  # model_dump(mode="json")
        self.chat = chat
        self.max_calls = get_strategy(self.config.strategy).max_calls
        self.data_column = data_column
        self.preprocess, self.postprocess = preprocess, postprocess
        self.stages = [fn(**kwargs) for fn, kwargs in stages]

    async def generate(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows with ``_request`` in, the processor's output rows out (same order)."""
        col = self.data_column
        batch: dict[str, Any] = {col: [self.preprocess(r)[col] for r in rows]}
        for stage in self.stages:
            out = None
            async for out in stage(batch):
                pass
            if not out or col not in out:
                raise RuntimeError(f"{type(stage).__name__} gave no rows for a batch of {len(rows)}")
            batch = out
        return [self.postprocess({col: r}) for r in batch[col]]

    async def __call__(self, batch) -> AsyncIterator[Any]:
        import pyarrow as pa

        from distill.generate.core import ITEM_COLUMNS
        from distill.generate.stage import ITEM_SCHEMA

        rows = [{c: r[c] for c in ITEM_COLUMNS} for r in batch.to_pylist()]
        for r in rows:
            r["calls"] = "[]"
        for _ in range(self.max_calls):
            prepared = [prepare_round(r, self.config, self.chat) for r in rows]
            active = [i for i, p in enumerate(prepared) if p["_active"]]
            if not active:
                break
            outputs = await self.generate([prepared[i] for i in active])
            rows = [_strip(p) for p in prepared]
            for i, out in zip(active, outputs):
                rows[i] = absorb_round(out)
        schema = ITEM_SCHEMA.append(pa.field("calls", pa.string()))
        yield pa.Table.from_pylist(rows, schema=schema)


def run_dataset(ds, config: GenerateConfig, chat: bool, *, resources: StageResources | None = None,
                processor_factory: Callable | None = None):
    """Work items in, the same items with their ``calls`` (JSON) out, through one pool of
    vLLM engine replicas (every round of every batch). ``processor_factory(config, chat,
    resources)`` builds the processor, once per call (default :func:`build_processor`; tests
    give one whose engine stage runs on CPU)."""
    factory = processor_factory or build_processor
    processor = factory(config, chat, resources)
    stages, kwargs = engine_actor_spec(processor)
    memory = engine_memory(config, resources)
    if memory is not None:
        kwargs["memory"] = memory
    return ds.map_batches(
        RoundsUDF,
        fn_constructor_kwargs={"config": config.model_dump(mode="json"), "chat": chat,
                               "stages": stages,
                               "data_column": processor.DATA_COLUMN,
                               "preprocess": processor.preprocess,
                               "postprocess": processor.postprocess},
        batch_format="pyarrow",
        **kwargs,
    )
