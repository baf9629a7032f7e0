"""What a run tells Ray's metrics while it works, for the dashboard and Prometheus / Grafana.

Every metric is recorded through :func:`record` with Ray's own ``ray.util.metrics`` in the
process that does the work (the driver, a Ray Data actor, a Ray Train worker, a Serve replica);
Ray's metrics agent on each node exports them on the node's metrics port, where Prometheus
reads them as ``ray_mathdistill_<name>`` (counters with a ``_total`` suffix) next to Ray's own
metrics. ``cluster/grafana/mathdistill.json`` is a dashboard over them.

:data:`METRICS` is the whole list -- the one place a metric is named, described and given its
tags:

* ``stage_rows{stage,direction}`` / ``stage_rows_per_s{stage}`` / ``stage_seconds{stage}`` --
  rows each pipeline stage read (``in``) and wrote (``out``), its rate and its wall time;
* ``teacher_requests{engine,status}`` / ``teacher_pass_rate{strategy}`` -- teacher
  generations by outcome (``ok`` or the error kind) and the share the verifier kept;
* ``sandbox_programs{outcome}`` / ``sandbox_programs_per_s`` -- programs the sandbox ran by
  outcome (``ok`` or the error kind) and the rate of the last batch;
* ``search_problems{found}`` / ``search_budget_hits`` / ``search_coverage`` -- problems the
  equation search finished, with or without a match, searches stopped by their budget, and
  the share with a match;
* ``train_loss{run}`` / ``train_tokens_per_s{run}`` -- the training loop's loss and
  throughput (rank 0, every ``log_every_steps``);
* serving (per model): ``requests{model,route,status}`` (HTTP status),
  ``request_latency_ms{model,route}``, ``answer_errors{model,error}`` (answers not given, by
  why), ``batch_size{model}``, ``solve_latency_ms{model}``, ``sandbox_ms{model}``
  (histograms in milliseconds or questions).

Recording is best effort: in a process not connected to Ray (a unit test, a local tool) it is
a no-op, and a failure to record never reaches the caller's work.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["BATCH_SIZES", "LATENCY_MS", "METRICS", "PREFIX", "Metric", "exported_name", "record"]

PREFIX = "mathdistill_"
LATENCY_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metric:
    """One metric: its name (without :data:`PREFIX`), kind, description and tag keys."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    description: str
    tags: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()  # a histogram's bucket bounds
    serving: bool = False  # recorded by the serving application, not by a pipeline run


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("stage_rows", "counter", "Rows a pipeline stage read (direction=in) and wrote "
           "(direction=out).", ("stage", "direction")),
    Metric("stage_rows_per_s", "gauge", "Rows a pipeline stage wrote per second of its run.",
           ("stage",)),
    Metric("stage_seconds", "gauge", "Wall time of a pipeline stage's last run.", ("stage",)),
    Metric("teacher_requests", "counter", "Teacher generations (one per rationale row) by "
           "engine and status (ok, or the error kind of a failed one).", ("engine", "status")),
    Metric("teacher_pass_rate", "gauge", "Share of a batch of teacher rationales the verifier "
           "kept (verdict correct).", ("strategy",)),
    Metric("sandbox_programs", "counter", "Programs the sandbox ran, by outcome (ok, or the "
           "error kind).", ("outcome",)),
    Metric("sandbox_programs_per_s", "gauge", "Programs per second of the sandbox's last "
           "batch."),
    Metric("search_problems", "counter", "Problems the equation search finished, by whether "
           "it found a matching equation (found=true/false).", ("found",)),
    Metric("search_budget_hits", "counter", "Searches stopped by their time or expression "
           "budget."),
    Metric("search_coverage", "gauge", "Share of a search stage's problems with a matching "
           "equation."),
    Metric("train_loss", "gauge", "Training loss (rank 0, every log_every_steps).", ("run",)),
    Metric("train_tokens_per_s", "gauge", "Training tokens per second over all workers.",
           ("run",)),
    Metric("requests", "counter", "HTTP requests by model, route and status.",
           ("model", "route", "status"), serving=True),
    Metric("request_latency_ms", "histogram", "Time to answer one HTTP request, ms.",
           ("model", "route"), LATENCY_MS, serving=True),
    Metric("answer_errors", "counter", "Answers not given, by why (no_answer, timeout, "
           "forbidden, unparsable, ...).", ("model", "error"), serving=True),
    Metric("batch_size", "histogram", "Questions decoded together by one replica.",
           ("model",), BATCH_SIZES, serving=True),
    Metric("solve_latency_ms", "histogram", "Decoding and reading one batch, ms.",
           ("model",), LATENCY_MS, serving=True),
    Metric("sandbox_ms", "histogram", "Running one batch's programs in the sandbox, ms.",
           ("model",), LATENCY_MS, serving=True),
)}

_made: dict[str, Any] = {}
_lock = threading.Lock()


def exported_name(name: str) -> str:
    """The name Prometheus shows for metric ``name`` (Ray adds ``ray_``; a counter ends in
    ``_total``, a histogram's series in ``_bucket`` / ``_count`` / ``_sum``)."""
    metric = METRICS[name]
    return f"ray_{PREFIX}{name}" + {"counter": "_total", "histogram": "_bucket"}.get(
        metric.kind, "")


def _instrument(metric: Metric) -> Any:
    if metric.serving:  # Serve's own classes add the deployment, replica and app tags
        from ray.serve.metrics import Counter, Gauge, Histogram
    else:
        from ray.util.metrics import Counter, Gauge, Histogram

    with _lock:
        made = _made.get(metric.name)
        if made is None:
            if metric.kind == "histogram":
                made = Histogram(PREFIX + metric.name, description=metric.description,
                                 boundaries=list(metric.boundaries), tag_keys=metric.tags)
            else:
                cls = Counter if metric.kind == "counter" else Gauge
                made = cls(PREFIX + metric.name, description=metric.description,
                           tag_keys=metric.tags)
            _made[metric.name] = made
    return made


def record(name: str, value: float = 1.0, **tags: Any) -> None:
    """Add ``value`` to counter ``name``, set gauge ``name`` to it or observe it in histogram
    ``name``, with ``tags`` (every tag key of the metric, values turned to text). A name not in
    :data:`METRICS` or a wrong set of tags is a programming error (``KeyError`` /
    ``ValueError``); otherwise it is a no-op outside Ray (Ray is never imported for it), and a
    failure inside Ray is logged, never raised."""
    metric = METRICS[name]
    if set(tags) != set(metric.tags):
        raise ValueError(f"metric {name!r} takes tags {sorted(metric.tags)}, got {sorted(tags)}")
    ray = sys.modules.get("ray")  # a process that never imported Ray is not in one
    if ray is None:
        return
    try:
        if not ray.is_initialized():
            return
        instrument = _instrument(metric)
        text_tags = {k: str(v) for k, v in tags.items()} or None
        if metric.kind == "counter":
            if value > 0:  # Ray's counters only go up
                instrument.inc(float(value), tags=text_tags)
        elif metric.kind == "histogram":
            instrument.observe(float(value), tags=text_tags)
        else:
            instrument.set(float(value), tags=text_tags)
    except Exception as e:  # noqa: BLE001 -- metrics never stop the work they describe
        _log.debug("metric %s not recorded: %s", name, e)
