"""The sandbox as a Ray Data stage: execute a column of programs, add the results as columns.

Needs column ``program`` (configurable: ``column=``); adds ``exec_ok``, ``exec_answer``,
``exec_error``, ``exec_stdout``, ``exec_duration_s`` (prefix configurable). A missing input
column raises :class:`KeyError` naming it and the columns the batch has.

:class:`ExecutePrograms` is the UDF class for ``Dataset.map_batches``: it starts one
:class:`~distill.sandbox.SandboxPool` per actor in ``__init__`` and closes it with the actor;
:func:`execute_programs` is the one-call wrapper. Batches may be numpy dicts or pandas frames.

Sizing: an actor asks Ray for ``num_cpus`` (the stage's resources); the pool inside it then
starts as many workers of each kind as Ray assigned it (``workers`` auto, resolved in the actor:
:mod:`distill.sandbox.sizing`), so what Ray accounts for is what runs. An explicit
``SandboxConfig.workers`` still wins inside the actor; it is also the default ``num_cpus``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distill.sandbox.config import SandboxConfig
from distill.sandbox.pool import SandboxPool

__all__ = ["OUTPUT_COLUMNS", "ExecutePrograms", "actor_cpus", "execute_programs"]

OUTPUT_COLUMNS = ("ok", "answer", "error", "stdout", "duration_s")


class ExecutePrograms:
    """``map_batches`` UDF: run the ``column`` of each batch through a sandbox pool."""

    def __init__(self, config: SandboxConfig | dict[str, Any] | None = None,
                 column: str = "program", prefix: str = "exec_") -> None:
        if isinstance(config, dict):
            config = SandboxConfig.model_validate(config)
        self.column = column
        self.prefix = prefix
        self.pool = SandboxPool(config)
        self.pool.start()

    def required_columns(self) -> list[str]:
        return [self.column]

    def output_columns(self) -> list[str]:
        return [self.prefix + c for c in OUTPUT_COLUMNS]

    def __call__(self, batch: Any) -> Any:
        columns = list(batch.keys()) if isinstance(batch, dict) else list(batch.columns)
        if self.column not in columns:
            raise KeyError(
                f"the sandbox stage needs column {self.column!r}; the batch has {columns}"
            )
        programs = [p if isinstance(p, str) else None for p in list(batch[self.column])]
        results = self.pool.run_many(programs)
        out = {
            "ok": [r.ok for r in results],
            "answer": [r.answer for r in results],
            "error": [r.error for r in results],
            "stdout": [r.stdout for r in results],
            "duration_s": [r.duration_s for r in results],
        }
        if isinstance(batch, dict):
            batch = dict(batch)
            batch[self.prefix + "ok"] = np.array(out["ok"], dtype=bool)
            batch[self.prefix + "duration_s"] = np.array(out["duration_s"], dtype=np.float64)
            for key in ("answer", "error", "stdout"):
                batch[self.prefix + key] = np.array(out[key], dtype=object)
            return batch
        batch = batch.copy()
        for key, values in out.items():
            batch[self.prefix + key] = values
        return batch

    def __del__(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.close()


def actor_cpus(config: SandboxConfig, num_cpus: float | None = None) -> float:
    """CPUs one sandbox actor asks Ray for: ``num_cpus`` (the stage's resources) when given,
    else ``config.workers`` when set, else 1. The pool inside the actor sizes itself from the
    CPUs Ray assigned, so the two agree."""
    if num_cpus is not None:
        if num_cpus < 0:
            raise ValueError(f"num_cpus for sandbox actors must be >= 0, got {num_cpus}")
        return float(num_cpus)
    return float(config.workers) if config.workers is not None else 1.0


def execute_programs(ds, config: SandboxConfig | dict[str, Any] | None = None, *,
                     column: str = "program", prefix: str = "exec_", actors: int = 1,
                     num_cpus: float | None = None, batch_size: int = 256):
    """``ds`` with the sandbox's result columns added (see the module docstring).

    ``actors`` actors, each asking Ray for ``num_cpus`` CPUs (pass the stage's resources;
    default: ``config.workers`` when set, else 1) and running its own pool sized from what Ray
    assigned it (``config.workers`` when set). The input column is checked here when the schema
    is known, and again by every batch.
    """
    import ray.data

    cfg = config if isinstance(config, SandboxConfig) else SandboxConfig.model_validate(config or {})
    try:
        schema = ds.schema(fetch_if_missing=False)
    except TypeError:  # older Ray without fetch_if_missing
        schema = None
    if schema is not None and column not in schema.names:
        raise KeyError(f"the sandbox stage needs column {column!r}; the dataset has {schema.names}")
    return ds.map_batches(
        ExecutePrograms,
        fn_constructor_kwargs={"config": cfg.model_dump(mode="json"), "column": column,
                               "prefix": prefix},
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=actor_cpus(cfg, num_cpus),
        batch_size=batch_size,
    )
