"""How many workers of each kind a sandbox pool starts: what the process that runs the
programs was given, not what the machine has.

:func:`resolve_workers` is the one rule, a pure function of its inputs; :func:`pool_size` reads
those inputs in the calling process and applies it. First match wins:

1. ``config``: an explicit ``SandboxConfig.workers``.
2. ``ray``: inside a Ray worker process (task or actor), the CPUs Ray assigned to it
   (``ray.get_runtime_context().get_assigned_resources()["CPU"]``; an actor started without
   ``num_cpus`` holds none and gets 1 worker). Ray is consulted only when it is already imported
   and connected in this process, never imported or started for this; a Ray *driver* has no
   assignment and goes on to the next rules.
3. ``cgroup``: the CPU quota of the process's cgroup (v2 ``cpu.max``; v1 ``cpu.cfs_quota_us`` /
   ``cpu.cfs_period_us``), the tightest one on the way to the root.
4. ``affinity``: the CPUs the process may run on (``os.sched_getaffinity(0)``).
5. ``cpu_count``: ``os.cpu_count()`` where affinity is unknown.

Fractional CPUs round up; the result is at least 1 and at most :data:`MAX_WORKERS`.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "MAX_WORKERS",
    "CpuQuota",
    "PoolSize",
    "affinity_cpus",
    "cgroup_cpu_quota",
    "parse_cfs_quota",
    "parse_cpu_max",
    "pool_size",
    "ray_assigned_cpus",
    "resolve_workers",
]

MAX_WORKERS = 256  # SandboxConfig.workers' upper bound


class CpuQuota(NamedTuple):
    """A cgroup CPU bandwidth limit: ``quota_us`` of CPU time per ``period_us``."""

    quota_us: int
    period_us: int

    @property
    def cpus(self) -> float:
        return self.quota_us / self.period_us


@dataclass(frozen=True)
class PoolSize:
    """Workers of each kind, where the number came from (``config``, ``ray``, ``cgroup``,
    ``affinity``, ``cpu_count``) and a sentence saying why (``ray: 2 CPUs assigned``)."""

    workers: int
    source: str
    reason: str


def _count(cpus: float) -> int:
    return max(1, min(MAX_WORKERS, math.ceil(cpus - 1e-9)))


def _cpus_text(cpus: float) -> str:
    n = f"{cpus:g}"
    return f"{n} CPU" if n == "1" else f"{n} CPUs"


def resolve_workers(
    configured: int | None,
    *,
    ray_cpus: float | None = None,
    cgroup: CpuQuota | tuple[int, int] | None = None,
    affinity: int | None = None,
    cpu_count: int | None = None,
) -> PoolSize:
    """The pool size from its inputs (see the module docstring for the order).

    ``configured``: ``SandboxConfig.workers`` (None = auto); ``ray_cpus``: the CPUs Ray assigned
    to this worker process, None outside a Ray worker (0 = an actor without ``num_cpus``);
    ``cgroup``: the tightest cgroup quota, None when unlimited or unknown; ``affinity``: the
    number of CPUs in the affinity mask; ``cpu_count``: ``os.cpu_count()``. Never raises for
    missing inputs: with nothing known the pool has 1 worker of each kind.
    """
    if configured is not None:
        if configured < 1:
            raise ValueError(f"sandbox workers must be at least 1, got {configured}")
        return PoolSize(min(configured, MAX_WORKERS), "config", f"config: workers={configured}")
    if ray_cpus is not None:
        if ray_cpus <= 0:
            return PoolSize(1, "ray", "ray: no CPUs assigned to this worker (1 worker)")
        return PoolSize(_count(ray_cpus), "ray", f"ray: {_cpus_text(ray_cpus)} assigned")
    if cgroup is not None:
        quota = CpuQuota(*cgroup)
        if quota.quota_us > 0 and quota.period_us > 0:
            return PoolSize(_count(quota.cpus), "cgroup",
                            f"cgroup quota: {quota.quota_us}/{quota.period_us} us = "
                            f"{_cpus_text(quota.cpus)}")
    if affinity is not None and affinity > 0:
        return PoolSize(_count(affinity), "affinity", f"cpu affinity: {_cpus_text(affinity)}")
    if cpu_count is not None and cpu_count > 0:
        return PoolSize(_count(cpu_count), "cpu_count", f"cpu count: {_cpus_text(cpu_count)}")
    return PoolSize(1, "cpu_count", "cpu count unknown (1 worker)")


# --------------------------------------------------------------------------------------------
# Reading the inputs in this process
# --------------------------------------------------------------------------------------------


def ray_assigned_cpus() -> float | None:
    """The CPUs Ray assigned to this process when it is a Ray worker (task or actor) of a
    connected Ray; None otherwise (Ray not imported, not initialised, or this is the driver).
    Never imports or starts Ray."""
    ray = sys.modules.get("ray")
    if ray is None:
        return None
    try:
        if not ray.is_initialized():
            return None
        from ray._private import worker as ray_worker

        if ray_worker.global_worker.mode != ray_worker.WORKER_MODE:
            return None  # the driver: nothing is assigned to it
        assigned = ray.get_runtime_context().get_assigned_resources()
    except Exception:  # noqa: BLE001 - a Ray we cannot ask is a Ray we do not use
        return None
    return float(assigned.get("CPU", 0.0))


def parse_cpu_max(text: str) -> CpuQuota | None:
    """cgroup v2 ``cpu.max`` (``"200000 100000"``; ``"max 100000"`` = unlimited -> None)."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    return CpuQuota(quota, period) if quota > 0 and period > 0 else None


def parse_cfs_quota(quota_text: str, period_text: str) -> CpuQuota | None:
    """cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1 = unlimited -> None)."""
    try:
        quota, period = int(quota_text.strip()), int(period_text.strip())
    except ValueError:
        return None
    return CpuQuota(quota, period) if quota > 0 and period > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _ancestors(root: Path, rel: str) -> list[Path]:
    """``root/rel``, its parents up to ``root``, and ``root`` itself (no duplicates)."""
    parts = [p for p in rel.strip("/").split("/") if p and p not in (".", "..")]
    out = [root.joinpath(*parts[:k]) for k in range(len(parts), -1, -1)]
    return list(dict.fromkeys(out))


def cgroup_cpu_quota(root: Path | str = "/sys/fs/cgroup",
                     proc_cgroup: Path | str = "/proc/self/cgroup") -> CpuQuota | None:
    """The tightest CPU quota over this process's cgroup and its ancestors, v2 and v1
    hierarchies both looked at; None when there is none (or no cgroup filesystem)."""
    root = Path(root)
    own = _read(Path(proc_cgroup)) or ""
    v2_rel, v1_rel = "/", "/"
    for line in own.splitlines():
        hid, _, rest = line.partition(":")
        controllers, _, rel = rest.partition(":")
        if hid == "0" and controllers == "":
            v2_rel = rel or "/"
        elif "cpu" in controllers.split(","):
            v1_rel = rel or "/"
    found: list[CpuQuota] = []
    for base in (root, root / "unified"):
        for d in _ancestors(base, v2_rel):
            text = _read(d / "cpu.max")
            q = parse_cpu_max(text) if text is not None else None
            if q is not None:
                found.append(q)
    for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for d in _ancestors(root / name, v1_rel):
            quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
            q = parse_cfs_quota(quota, period) if quota is not None and period is not None else None
            if q is not None:
                found.append(q)
    return min(found, key=lambda q: q.cpus) if found else None


def affinity_cpus() -> int | None:
    """How many CPUs this process may run on (None where the platform cannot say)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def pool_size(configured: int | None) -> PoolSize:
    """:func:`resolve_workers` with its inputs read in this process (call it in the process
    that runs the programs)."""
    if configured is not None:
        return resolve_workers(configured)
    ray_cpus = ray_assigned_cpus()
    if ray_cpus is not None:
        return resolve_workers(None, ray_cpus=ray_cpus)
    return resolve_workers(None, cgroup=cgroup_cpu_quota(), affinity=affinity_cpus(),
                           cpu_count=os.cpu_count())
