"""How many workers a sandbox pool starts: the resolver's rule on injected inputs (Ray's
assignment, cgroup quotas, CPU affinity, an explicit count), the cgroup readers on fake cgroup
trees, the config's auto default surviving JSON, and real pools -- in this process and inside a
Ray actor given 1 CPU."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from distill.sandbox import SandboxConfig, SandboxPool
from distill.sandbox import sizing
from distill.sandbox.sizing import (
    CpuQuota,
    PoolSize,
    cgroup_cpu_quota,
    parse_cfs_quota,
    parse_cpu_max,
    resolve_workers,
)
from distill.sandbox.stage import actor_cpus

# --------------------------------------------------------------------------------------------
# The rule
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("inputs, expected", [
    # Ray's assignment wins over everything but the config; fractions round up
    ({"ray_cpus": 1.5, "cgroup": (800000, 100000), "affinity": 8},
     PoolSize(2, "ray", "ray: 1.5 CPUs assigned")),
    ({"ray_cpus": 1.0, "affinity": 64}, PoolSize(1, "ray", "ray: 1 CPU assigned")),
    ({"ray_cpus": 0.25, "affinity": 64}, PoolSize(1, "ray", "ray: 0.25 CPUs assigned")),
    ({"ray_cpus": 4.0}, PoolSize(4, "ray", "ray: 4 CPUs assigned")),
    # an actor started without num_cpus holds no CPU: one worker, not the node's count
    ({"ray_cpus": 0.0, "affinity": 64},
     PoolSize(1, "ray", "ray: no CPUs assigned to this worker (1 worker)")),
    # outside Ray: the cgroup quota, then the affinity, then cpu_count
    ({"cgroup": (200000, 100000), "affinity": 8},
     PoolSize(2, "cgroup", "cgroup quota: 200000/100000 us = 2 CPUs")),
    ({"cgroup": CpuQuota(150000, 100000), "affinity": 8},
     PoolSize(2, "cgroup", "cgroup quota: 150000/100000 us = 1.5 CPUs")),
    ({"cgroup": (50000, 100000), "affinity": 8},
     PoolSize(1, "cgroup", "cgroup quota: 50000/100000 us = 0.5 CPUs")),
    ({"cgroup": None, "affinity": 8}, PoolSize(8, "affinity", "cpu affinity: 8 CPUs")),
    ({"affinity": 1, "cpu_count": 64}, PoolSize(1, "affinity", "cpu affinity: 1 CPU")),
    ({"cpu_count": 3}, PoolSize(3, "cpu_count", "cpu count: 3 CPUs")),
    ({}, PoolSize(1, "cpu_count", "cpu count unknown (1 worker)")),
    ({"affinity": 1000}, PoolSize(256, "affinity", "cpu affinity: 1000 CPUs")),
])
def test_resolver_auto(inputs: dict, expected: PoolSize) -> None:
    assert resolve_workers(None, **inputs) == expected


def test_resolver_explicit_workers_override_everything() -> None:
    got = resolve_workers(3, ray_cpus=1.0, cgroup=(100000, 100000), affinity=64)
    assert got == PoolSize(3, "config", "config: workers=3")
    with pytest.raises(ValueError, match="at least 1"):
        resolve_workers(0)


# --------------------------------------------------------------------------------------------
# Reading cgroups
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("200000 100000\n", CpuQuota(200000, 100000)),
    ("max 100000\n", None),
    ("", None),
    ("garbage", None),
])
def test_parse_cpu_max(text: str, expected) -> None:
    assert parse_cpu_max(text) == expected


def test_parse_cfs_quota() -> None:
    assert parse_cfs_quota("150000\n", "100000\n") == CpuQuota(150000, 100000)
    assert parse_cfs_quota("-1\n", "100000\n") is None
    assert parse_cfs_quota("x", "100000") is None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_takes_the_tightest_quota_up_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root / "cpu.max", "max 100000\n")
    _write(root / "kubepods" / "cpu.max", "400000 100000\n")
    _write(root / "kubepods" / "pod1" / "cpu.max", "250000 100000\n")
    _write(root / "kubepods" / "pod1" / "ctr" / "cpu.max", "max 100000\n")
    proc = tmp_path / "self-cgroup"
    proc.write_text("0::/kubepods/pod1/ctr\n")
    q = cgroup_cpu_quota(root, proc)
    assert q == CpuQuota(250000, 100000)
    assert resolve_workers(None, cgroup=q, affinity=64).workers == 3


def test_cgroup_v2_in_a_container_reads_the_root(tmp_path: Path) -> None:
    # a cgroup namespace: /proc/self/cgroup says "/", the limit sits at the mount's root
    root = tmp_path / "cgroup"
    _write(root / "cpu.max", "100000 100000\n")
    proc = tmp_path / "self-cgroup"
    proc.write_text("0::/\n")
    assert cgroup_cpu_quota(root, proc) == CpuQuota(100000, 100000)


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")
    _write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    _write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "300000\n")
    _write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    proc = tmp_path / "self-cgroup"
    proc.write_text("12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    assert cgroup_cpu_quota(root, proc) == CpuQuota(300000, 100000)


def test_no_cgroup_filesystem(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path / "absent", tmp_path / "absent-too") is None


def test_outside_ray_nothing_is_assigned() -> None:
    # whether or not another test left Ray connected, this process is a driver, not a worker
    assert sizing.ray_assigned_cpus() is None


# --------------------------------------------------------------------------------------------
# The config: auto by default, and still auto after crossing into an actor as JSON
# --------------------------------------------------------------------------------------------


def test_config_workers_default_to_auto_and_survive_json() -> None:
    cfg = SandboxConfig()
    assert cfg.workers is None
    dumped = cfg.model_dump(mode="json")
    assert dumped["workers"] is None
    assert SandboxConfig.model_validate(dumped).workers is None
    assert SandboxConfig.model_validate_json(cfg.model_dump_json()).workers is None
    assert SandboxConfig.model_validate(json.loads(json.dumps(dumped))).workers is None
    assert SandboxConfig(workers=4).model_dump(mode="json")["workers"] == 4


def test_actor_cpus_come_from_the_stage_resources() -> None:
    assert actor_cpus(SandboxConfig(), None) == 1.0
    assert actor_cpus(SandboxConfig(), 2.5) == 2.5
    assert actor_cpus(SandboxConfig(workers=3), None) == 3.0
    assert actor_cpus(SandboxConfig(workers=3), 1) == 1.0
    with pytest.raises(ValueError, match="num_cpus"):
        actor_cpus(SandboxConfig(), -1)


# --------------------------------------------------------------------------------------------
# Real pools
# --------------------------------------------------------------------------------------------


def test_pool_sizes_itself_at_start_and_says_why(monkeypatch, caplog) -> None:
    """Outside Ray, an auto pool takes the affinity when there is no cgroup quota (inputs
    patched to one CPU, so the test starts one worker of each kind whatever the machine)."""
    monkeypatch.setattr(sizing, "cgroup_cpu_quota", lambda: None)
    monkeypatch.setattr(sizing, "affinity_cpus", lambda: 1)
    pool = SandboxPool(warmup=False, timeout_s=2.0)
    assert pool.config.workers is None and pool.size is None
    with caplog.at_level(logging.INFO, logger="distill.sandbox.pool"):
        with pool:
            report = pool.report
            assert pool.size == PoolSize(1, "affinity", "cpu affinity: 1 CPU")
            assert (report.workers, report.workers_reason) == (1, "cpu affinity: 1 CPU")
            assert report.kinds == ["heavy", "light"]
            assert report.to_dict()["workers"] == 1
            assert len(pool.worker_pids()) == 2  # one heavy, one light
            results = pool.run_many(["ans = 6 * 7", "import numpy\nans = int(numpy.int64(5))"])
            assert [r.answer for r in results] == ["42", "5"]
            pool.start()  # already started: nothing logged again
    started = [r.getMessage() for r in caplog.records if "sandbox pool:" in r.getMessage()]
    assert started == ["sandbox pool: 1 worker of each kind (heavy, light) -- cpu affinity: "
                       f"1 CPU; isolation {report.mode}"]


def test_explicit_workers_in_the_pool() -> None:
    with SandboxPool(workers=2, light_workers=False, warmup=False) as pool:
        assert (pool.report.workers, pool.report.workers_reason) == (2, "config: workers=2")
        assert len(pool.worker_pids()) == 2


@pytest.mark.ray
def test_pool_inside_a_ray_actor_sizes_from_its_cpus(ray_local) -> None:
    """Configs cross into actors as JSON with workers auto; an actor given 1 CPU on a 2-CPU
    Ray starts 1 worker of each kind (before: the driver's cpu_count, 2 here), one given 2 CPUs
    starts 2."""
    ray = ray_local
    box = SandboxConfig(warmup=False, timeout_s=2.0).model_dump(mode="json")

    class Holder:
        def __init__(self, config: dict) -> None:
            from distill.sandbox import SandboxConfig, SandboxPool

            self.pool = SandboxPool(SandboxConfig.model_validate(config))
            self.pool.start()

        def describe(self) -> dict:
            r = self.pool.report
            return {"configured": self.pool.config.workers, "workers": r.workers,
                    "reason": r.workers_reason, "kinds": r.kinds,
                    "slots": {k: len(v) for k, v in self.pool._workers.items()},
                    "live": len(self.pool.worker_pids()),
                    "answer": self.pool.run("ans = 2 + 3").answer}

        def close(self) -> None:
            self.pool.close()

    Actor = ray.remote(Holder)
    one = Actor.options(num_cpus=1).remote(box)
    try:
        got = ray.get(one.describe.remote(), timeout=180)
    finally:
        ray.get(one.close.remote(), timeout=60)
        ray.kill(one)
    assert got == {"configured": None, "workers": 1, "reason": "ray: 1 CPU assigned",
                   "kinds": ["heavy", "light"], "slots": {"heavy": 1, "light": 1},
                   "live": 2, "answer": "5"}

    two = Actor.options(num_cpus=2).remote(box)
    try:
        got = ray.get(two.describe.remote(), timeout=180)
    finally:
        ray.get(two.close.remote(), timeout=60)
        ray.kill(two)
    assert (got["workers"], got["reason"], got["slots"]) == \
        (2, "ray: 2 CPUs assigned", {"heavy": 2, "light": 2})
