"""The metrics a run exports (``distill.metrics``): one list of names, tags and kinds; recording
outside Ray is a no-op; the Grafana dashboard shows every one. What a real run exports is
checked where the runs are: tests/test_pipeline.py (both teachers) and tests/test_serve.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from distill.config import RayConfig
from distill.metrics import METRICS, PREFIX, exported_name, record

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "cluster" / "grafana" / "mathdistill.json"


def test_every_metric_has_a_prometheus_name_a_description_and_tags() -> None:
    for name, m in METRICS.items():
        assert m.name == name and re.fullmatch(r"[a-z][a-z0-9_]*", PREFIX + name), name
        assert m.description.endswith(".") and len(m.description) > 20, name
        assert all(re.fullmatch(r"[a-z][a-z_]*", t) for t in m.tags), name
        assert (m.kind == "histogram") == bool(m.boundaries), name
        assert list(m.boundaries) == sorted(m.boundaries), name
    assert exported_name("stage_rows") == "ray_mathdistill_stage_rows_total"
    assert exported_name("search_coverage") == "ray_mathdistill_search_coverage"
    assert exported_name("batch_size") == "ray_mathdistill_batch_size_bucket"


def test_recording_checks_its_tags_and_is_a_no_op_outside_ray() -> None:
    with pytest.raises(ValueError, match=r"takes tags \['direction', 'stage'\], got \['stage'\]"):
        record("stage_rows", 3, stage="search")
    with pytest.raises(KeyError):
        record("no_such_metric", 1)
    # in a fresh process (this one may hold the test session's Ray): no Ray, nothing happens,
    # and Ray is neither imported nor started for it
    script = (
        "import sys\n"
        "from distill.metrics import record\n"
        "record('stage_rows', 3, stage='search', direction='in')\n"
        "record('search_coverage', 0.5)\n"
        "assert 'ray' not in sys.modules\n"
        "import ray\n"
        "record('train_loss', 1.0, run='student')\n"
        "assert not ray.is_initialized()\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_local_ray_exports_metrics_on_the_configured_port() -> None:
    assert RayConfig(metrics_export_port=18080).init_kwargs()["_metrics_export_port"] == 18080
    assert "_metrics_export_port" not in RayConfig().init_kwargs()
    # a cluster's own `ray start --metrics-export-port` decides there
    joined = RayConfig(address="auto", metrics_export_port=18080).init_kwargs()
    assert "_metrics_export_port" not in joined


def test_the_grafana_dashboard_shows_every_metric() -> None:
    board = json.loads(DASHBOARD.read_text())
    queries = " ".join(t["expr"] for p in board["panels"] for t in p.get("targets", []))
    for name in METRICS:
        assert exported_name(name) in queries or f"ray_{PREFIX}{name}_" in queries, name
    assert all(p.get("datasource") for p in board["panels"] if p.get("targets"))
    # every query names only metrics that exist (a renamed metric leaves no dead panel)
    for used in set(re.findall(r"ray_mathdistill_[a-z0-9_]+", queries)):
        base = re.sub(r"_(total|bucket|count|sum)$", "", used[len("ray_" + PREFIX):])
        assert base in METRICS, used
