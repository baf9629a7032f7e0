"""Shared fixtures. Tests that read the real datasets use ``shared_data_dir`` and skip cleanly
when ../shared/data is absent (a user's fresh clone has no ../shared)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real datasets (../shared/data), or skip when this checkout has none beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray cluster for the session (2 CPUs, no dashboard; metrics exported every
    second instead of every ten, for tests/metrics_scraper.py), shut down at the end."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 namespace="mathdistill-tests",
                 _system_config={"metrics_report_interval_ms": 1000})
    yield ray
    ray.shutdown()


# ------------------------------------------------------------------------------ test tiers
# `make test` runs everything; `make test-fast` is the unit tier, -m "not ray and not slow and
# not gpu". The `ray` marker must be true for the unit tier to stay free of Ray clusters: a
# test that takes the `ray_local` fixture is marked here, and any other test that starts Ray
# without the marker (Ray Data auto-initializes Ray on first use) fails at teardown.
@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()) and item.get_closest_marker("ray") is None:
            item.add_marker(pytest.mark.ray)


def _ray_is_up() -> bool:
    ray = sys.modules.get("ray")  # never import Ray here: the unit tier must not need it
    return ray is not None and hasattr(ray, "is_initialized") and ray.is_initialized()


@pytest.fixture(autouse=True)
def _no_ray_without_the_ray_marker(request):
    """Fail a test not marked `ray` that leaves Ray initialized (it would start a cluster in the
    unit tier). Autouse, so it is set up before and torn down after the test's own fixtures."""
    if request.node.get_closest_marker("ray") is not None or _ray_is_up():
        yield
        return
    yield
    if _ray_is_up():
        sys.modules["ray"].shutdown()
        pytest.fail(f"{request.node.nodeid} initialized Ray but is not marked `ray`: "
                    "mark it (pytestmark = pytest.mark.ray) or keep it off Ray", pytrace=False)


@pytest.fixture()
def one_thread():
    """One intra-op torch thread for the test (reduction order is then fixed: golden numbers
    and exact resume comparisons are taken this way)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server on loopback (moto's), with one bucket (tests/s3_server.py)."""
    from s3_server import S3Server

    with S3Server() as server:
        yield server


@pytest.fixture()
def s3(s3_server, monkeypatch):
    """``s3_server`` with its AWS_* variables set in this process for the test (pyarrow reads
    them when a filesystem is made)."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return s3_server
