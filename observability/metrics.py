"""The service's Prometheus metrics: one registry per app, correct with several Sanic workers.

Multiprocess mode (prometheus-client's ``PROMETHEUS_MULTIPROC_DIR``): every worker writes its
samples to mmap files in one directory and a scrape, answered by whichever worker gets it, merges
them all (``MultiProcessCollector``).  prometheus-client decides the mode when it is first
imported, so the directory must be in the environment before the workers start:
``prepare_multiprocess_dir`` runs in Sanic's ``main_process_start`` and creates a temporary one
when none is configured (and removes files a previous run left behind in a configured one).
A single process (tests, ``--single-process``) simply uses the app's own registry.  A worker
that stops cleanly drops its live gauges (``mark_worker_dead``); one that crashes leaves its
``pid`` series until the next start-up clears the directory.

Label values are bounded: routes are URI templates (``/api/posts/<post_id:int>``), methods a
fixed set, cache tags are reduced to their family (``post:{id}``).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import tempfile
from bisect import bisect_left
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format every Prometheus version reads (generate_latest writes it).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
# Seconds; request latency spans cache hits (sub-millisecond) to slow database pages.
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
BACKEND_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1.0, 2.5)
_ID_SEGMENT = re.compile(r"^-?\d+$")
MAX_TAG_FAMILIES = 200


def multiprocess_active() -> bool:
    """True when this process writes samples to ``PROMETHEUS_MULTIPROC_DIR`` files."""
    return values.ValueClass is not values.MutexValue


def tag_family(tag: str) -> str:
    """A bounded label for a cache tag: numbers become ``{id}``, at most two segments.

    ``post:42`` -> ``post:{id}``; ``posts:author:alice`` -> ``posts:author``.
    """
    parts = ["{id}" if _ID_SEGMENT.match(part) else part for part in tag.split(":")[:2]]
    return ":".join(parts)


class Tally:
    """Hot-path samples summed in plain dicts and written to their metrics in bulk.

    In multiprocess mode every prometheus-client increment takes a lock, checks the pid and
    writes an mmap'd file: a cache hit made seven of them, about a tenth of its CPU time. The
    request path adds here instead; ``flush`` (each second from a worker task, and before every
    render) writes the sums, so a scrape lags this worker's requests by at most that second.
    """

    __slots__ = ("_counts", "_observed")

    def __init__(self) -> None:
        self._counts: dict[Any, float] = {}
        self._observed: dict[Any, list[float]] = {}

    def inc(self, child: Any, amount: float = 1.0) -> None:
        """``child.inc(amount)``, deferred (a Counter's or Gauge's labelled child)."""
        counts = self._counts
        counts[child] = counts.get(child, 0.0) + amount

    def observe(self, child: Any, value: float) -> None:
        """``child.observe(value)``, deferred (a Histogram's labelled child)."""
        sums = self._observed.get(child)
        if sums is None:
            sums = self._observed[child] = [0.0] * (len(child._upper_bounds) + 1)
        sums[0] += value
        # Histogram.observe counts the first bucket whose upper bound is >= value.
        sums[1 + bisect_left(child._upper_bounds, value)] += 1

    def flush(self) -> None:
        """Write every pending sum to its metric."""
        counts, self._counts = self._counts, {}
        observed, self._observed = self._observed, {}
        for child, amount in counts.items():
            child.inc(amount)
        for child, sums in observed.items():
            # prometheus-client keeps a histogram child's sum and bucket values in these two
            # attributes (tests/unit/test_metrics_tally.py pins the equivalence with observe).
            child._sum.inc(sums[0])
            for bucket, count in zip(child._buckets, sums[1:]):
                if count:
                    bucket.inc(count)


class Metrics:
    """Every metric the service exports, registered in one registry per app."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "http_requests_total", "HTTP requests answered, by method, route template and status",
            ("method", "route", "status"), registry=r)
        self.request_latency = Histogram(
            "http_request_duration_seconds",
            "Time from the first request middleware to the response, by route and status",
            ("method", "route", "status"), buckets=REQUEST_BUCKETS, registry=r)
        # In multiprocess mode every worker's value is exported with a ``pid`` label.
        self.worker_requests = Gauge(
            "http_worker_requests", "Requests answered by this worker process since it started",
            registry=r, multiprocess_mode="liveall")
        self.cache_lookups = Counter(
            "cache_lookups_total", "Cache lookups by route and outcome (hit, miss, bypass, stale)",
            ("route", "outcome"), registry=r)
        self.cache_stores = Counter(
            "cache_stores_total", "Responses stored in the cache, by route", ("route",),
            registry=r)
        self.cache_invalidations = Counter(
            "cache_invalidations_total", "Cache tags cleared by writes, by tag family", ("tag",),
            registry=r)
        self.cache_errors = Counter(
            "cache_errors_total", "Cache backend failures served uncached (fail open)",
            ("route", "operation"), registry=r)
        self.breaker_state = Gauge(
            "cache_breaker_state", "Circuit breaker state: 0 closed, 1 half_open, 2 open",
            registry=r, multiprocess_mode="liveall")
        self.breaker_transitions = Counter(
            "cache_breaker_transitions_total", "Circuit breaker state changes",
            ("from_state", "to_state"), registry=r)
        self.backend_latency = Histogram(
            "cache_backend_command_duration_seconds",
            "Latency of cache backend commands (Redis MGET, SET, INCR, PING)", ("command",),
            buckets=BACKEND_BUCKETS, registry=r)
        self.db_latency = Histogram(
            "db_query_duration_seconds",
            "Latency of database statements through the ORM connection, by kind",
            ("operation",), buckets=BACKEND_BUCKETS, registry=r)
        self._tag_families: set[str] = set()
        self.tally = Tally()

    def tag_label(self, tag: str) -> str:
        """``tag_family(tag)``, or ``other`` once ``MAX_TAG_FAMILIES`` distinct ones were seen."""
        family = tag_family(tag)
        if family in self._tag_families:
            return family
        if len(self._tag_families) >= MAX_TAG_FAMILIES:
            return "other"
        self._tag_families.add(family)
        return family

    def render(self) -> bytes:
        """The exposition text: merged over all workers in multiprocess mode."""
        self.tally.flush()
        path = os.environ.get(MULTIPROC_ENV)
        if path and multiprocess_active():
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged, path=path)
            return generate_latest(merged)
        return generate_latest(self.registry)


def prepare_multiprocess_dir() -> str | None:
    """Point prometheus-client's multiprocess mode at a directory; call before workers start.

    Returns the directory when it was created here (the caller removes it at shutdown), else
    ``None`` after clearing stale ``*.db`` files from the configured one.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        os.makedirs(configured, exist_ok=True)
        stale = glob.glob(os.path.join(configured, "*.db"))
        for path in stale:
            os.remove(path)
        log.info("Prometheus multiprocess directory %s (%d stale files removed)",
                 configured, len(stale))
        return None
    created = tempfile.mkdtemp(prefix="prometheus-multiproc-")
    os.environ[MULTIPROC_ENV] = created
    log.info("Prometheus multiprocess directory %s (temporary)", created)
    return created


def remove_multiprocess_dir(path: str) -> None:
    """Remove a directory made by ``prepare_multiprocess_dir`` (after the workers stopped)."""
    shutil.rmtree(path, ignore_errors=True)
    if os.environ.get(MULTIPROC_ENV) == path:
        del os.environ[MULTIPROC_ENV]


def mark_worker_dead(pid: int) -> None:
    """Drop a stopped worker's live gauges (its counters and histograms keep counting)."""
    if os.environ.get(MULTIPROC_ENV) and multiprocess_active():
        multiprocess.mark_process_dead(pid)
