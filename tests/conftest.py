"""Shared fixtures. Tests that read the real datasets use ``shared_data_dir`` and skip cleanly
when ../shared/data is absent (a user's fresh clone has no ../shared)."""

from __future__ import annotations

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
    """A local Ray cluster for the session (2 CPUs, no dashboard), shut down at the end."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 namespace="mathdistill-tests")
    yield ray
    ray.shutdown()
