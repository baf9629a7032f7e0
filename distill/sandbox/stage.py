"""The sandbox as a Ray Data stage: execute a column of programs, add the results as columns.

Needs column ``program`` (configurable: ``column=``); adds ``exec_ok``, ``exec_answer``,
``exec_error``, ``exec_stdout``, ``exec_duration_s`` (prefix configurable). A missing input
column raises :class:`KeyError` naming it and the columns the batch has.

:class:`ExecutePrograms` is the UDF class for ``Dataset.map_batches``: it starts one
:class:`~distill.sandbox.SandboxPool` per actor in ``__init__`` and closes it with the actor;
:func:`execute_programs` is the one-call wrapper. Batches may be numpy dicts or pandas frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distill.sandbox.config import SandboxConfig
from distill.sandbox.pool import SandboxPool

__all__ = ["OUTPUT_COLUMNS", "ExecutePrograms", "execute_programs"]

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


def execute_programs(ds, config: SandboxConfig | dict[str, Any] | None = None, *,
                     column: str = "program", prefix: str = "exec_", actors: int = 1,
                     num_cpus: float | None = None, batch_size: int = 256):
    """``ds`` with the sandbox's result columns added (see the module docstring).

    One actor per ``actors``, each with its own pool of ``config.workers`` workers of each kind;
    ``num_cpus`` per actor defaults to ``config.workers``. The input column is checked here when
    the schema is known, and again by every batch.
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
        fn_constructor_kwargs={"config": cfg.model_dump(), "column": column, "prefix": prefix},
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=num_cpus if num_cpus is not None else float(cfg.workers),
        batch_size=batch_size,
    )
