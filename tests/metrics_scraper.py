"""Reads the metrics a Ray node exports (Prometheus text on its metrics port) while a test's
work runs, the way Prometheus would: the values of the ``mathdistill_`` series before, during
and after, so a test can assert what a block of work added."""

from __future__ import annotations

import threading
import time
import urllib.request
from typing import Any, Callable, Iterable

from distill.metrics import METRICS, PREFIX

Series = tuple[str, tuple[tuple[str, str], ...]]  # (metric name, sorted labels)


def metrics_port() -> int:
    """The metrics export port of the first node of the Ray cluster this process is in."""
    import ray

    return int(ray.nodes()[0]["MetricsExportPort"])


def scrape(port: int) -> dict[Series, float]:
    """Every ``ray_mathdistill_*`` sample the node exports now, keyed by our metric name
    (without prefix or the counter / histogram suffix) and its labels, minus Ray's own."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[Series, float] = {}
    head = "ray_" + PREFIX
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(head):
                continue
            name = sample.name[len(head):]
            for suffix in ("_total", "_count"):  # a counter; a histogram's observations
                if name.endswith(suffix) and name[: -len(suffix)] in METRICS:
                    name = name[: -len(suffix)]
            if name not in METRICS:
                continue  # a histogram's _bucket and _sum series
            labels = tuple(sorted((k, v) for k, v in sample.labels.items()
                                  if k in METRICS[name].tags))
            # one series per worker process: counts add up, a gauge keeps the last seen
            key = (name, labels)
            if METRICS[name].kind == "gauge":
                out[key] = sample.value
            else:
                out[key] = out.get(key, 0.0) + sample.value
    return out


class MetricsScraper:
    """``with MetricsScraper() as m: <work>``: scrapes before, every ``every_s`` during, and
    after the work (until :meth:`wait_for` names have appeared: Ray exports every few
    seconds). ``delta`` is what counters and histograms gained during the work, ``last`` a
    gauge's last value."""

    def __init__(self, port: int | None = None, every_s: float = 1.0, settle_s: float = 2.0):
        self.port = port if port is not None else metrics_port()
        self.every_s = every_s
        self.settle_s = settle_s  # what was recorded before the work is exported by then
        self.before: dict[Series, float] = {}
        self.latest: dict[Series, float] = {}
        self.gauges_seen: dict[Series, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        now = scrape(self.port)
        self.latest.update(now)
        for key, value in now.items():
            if METRICS[key[0]].kind == "gauge":
                self.gauges_seen[key] = value

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self._poll()
            except OSError:
                pass

    def __enter__(self) -> "MetricsScraper":
        time.sleep(self.settle_s)
        self.before = scrape(self.port)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def names(self) -> set[str]:
        """Metrics with a series that appeared or changed during the work."""
        return {k[0] for k, v in self.latest.items() if self.before.get(k) != v}

    def wait_for(self, names: Iterable[str], timeout_s: float = 30.0) -> set[str]:
        """Scrape until every one of ``names`` has been seen (or ``timeout_s``); returns the
        ones still missing."""
        deadline = time.monotonic() + timeout_s
        missing = set(names) - self.names()
        while missing and time.monotonic() < deadline:
            time.sleep(1.0)
            self._poll()
            missing = set(names) - self.names()
        return missing

    def wait_until(self, ready: Callable[["MetricsScraper"], bool], timeout_s: float = 30.0
                   ) -> bool:
        """Scrape until ``ready(self)`` (or ``timeout_s``); returns whether it became true."""
        deadline = time.monotonic() + timeout_s
        while not ready(self):
            if time.monotonic() > deadline:
                return False
            time.sleep(1.0)
            self._poll()
        return True

    def delta(self, name: str, **labels: Any) -> float:
        """What counter / histogram ``name`` gained during the work, over the series whose
        labels include ``labels``."""
        want = {(k, str(v)) for k, v in labels.items()}
        return sum(v - self.before.get(k, 0.0) for k, v in self.latest.items()
                   if k[0] == name and want <= set(k[1]))

    def last(self, name: str, **labels: Any) -> float | None:
        """The last value gauge ``name`` showed during the work, for a series with
        ``labels``."""
        want = {(k, str(v)) for k, v in labels.items()}
        found = [v for k, v in self.gauges_seen.items() if k[0] == name and want <= set(k[1])]
        return found[-1] if found else None
