"""What one stage's Ray workers ask for, and the one translation of it into Ray's arguments.

:class:`StageResources` is an entry of ``ray.resources`` (``ray_config.yaml``, or the ``ray``
section of a pipeline config). Every stage turns it into Ray's arguments here, never by itself:

* :meth:`StageResources.ray_args` -- the keywords of a Ray task / actor / ``map_batches`` call
  (``num_cpus``, ``num_gpus``, ``memory`` in bytes);
* :meth:`StageResources.map_batches_args` -- the same plus the fixed-size actor pool
  (``compute``) of a ``map_batches`` over a callable class;
* :meth:`StageResources.pool_size` -- how many actors that pool has (``concurrency``, else the
  stage's default, else as many as the cluster's CPUs allow);
* :meth:`StageResources.resources_per_worker` -- Ray Train's ``ScalingConfig`` form.

This module imports nothing of the stages, so a stage package imports it (and never
:mod:`distill.config`, which imports every stage's config).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from distill.configbase import StrictModel

__all__ = ["GIB", "StageResources", "resources_or_default"]

GIB = 1024**3


class StageResources(StrictModel):
    """Resources one stage's Ray workers ask for (per task or per actor)."""

    num_cpus: float = Field(1.0, ge=0, description="CPUs per task/actor.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per task/actor.")
    memory_gb: float | None = Field(None, gt=0, description="Memory per task/actor, GiB.")
    concurrency: int | None = Field(
        None, ge=1, description="Actors in the pool / tasks at once; None lets Ray decide."
    )

    def memory_bytes(self) -> int | None:
        """``memory_gb`` in bytes (what Ray's ``memory`` argument takes), or None."""
        return int(self.memory_gb * GIB) if self.memory_gb else None

    def ray_args(self) -> dict[str, Any]:
        """Keywords for ``ray.remote(...)`` / ``.options(...)`` / ``Dataset.map_batches``: what
        one task or actor reserves."""
        args: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        memory = self.memory_bytes()
        if memory:
            args["memory"] = memory
        return args

    def pool_size(self, default: int | None = None, cap: int | None = None) -> int:
        """Actors in a stage's pool: ``concurrency`` when set; else ``default``; else as many
        as the cluster's CPUs allow at ``num_cpus`` each (Ray must be initialised). ``cap``
        (e.g. the number of batches) bounds the result; it is at least 1."""
        if self.concurrency:
            n = self.concurrency
        elif default is not None:
            n = default
        else:
            import ray

            cpus = ray.cluster_resources().get("CPU", 1.0)
            n = int(cpus // self.num_cpus) if self.num_cpus > 0 else int(cpus)
        if cap is not None:
            n = min(n, cap)
        return max(1, n)

    def map_batches_args(self, workers: int) -> dict[str, Any]:
        """Keywords for ``Dataset.map_batches`` over a callable class: a fixed pool of
        ``workers`` actors (see :meth:`pool_size`), each reserving :meth:`ray_args`."""
        import ray.data

        return {"compute": ray.data.ActorPoolStrategy(size=workers), **self.ray_args()}

    def resources_per_worker(self) -> dict[str, float]:
        """Ray Train's ``ScalingConfig(resources_per_worker=...)``: CPU, GPU and memory (bytes)
        of one training worker."""
        per: dict[str, float] = {"CPU": self.num_cpus}
        if self.num_gpus:
            per["GPU"] = self.num_gpus
        memory = self.memory_bytes()
        if memory:
            per["memory"] = memory
        return per


def resources_or_default(resources: StageResources | None) -> StageResources:
    """``resources``, or the defaults (1 CPU, no GPU) when a caller passed None."""
    return resources if resources is not None else StageResources()
