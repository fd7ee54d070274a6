"""``GET /metrics`` and what feeds it: request timing, the cache observer, database timing.

``install_metrics(app)`` is the one call ``app.py`` makes: it puts a ``Metrics`` on
``app.ctx.metrics``, adds the request middleware, the ``/metrics`` route and the listeners that
prepare prometheus-client's multiprocess directory (main process) and time the ORM's statements
(each worker).  ``CacheMetricsObserver`` is handed to ``install_cache(observer=...)``.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from typing import Any

from sanic import Blueprint, Request, Sanic
from sanic.exceptions import Unauthorized
from sanic.response import HTTPResponse
from tortoise import connections

from middleware.observer import CacheObserver
from observability.db_timing import instrument_client
from observability.metrics import (
    BREAKER_STATES,
    CONTENT_TYPE,
    Metrics,
    mark_worker_dead,
    prepare_multiprocess_dir,
    remove_multiprocess_dir,
)

bp = Blueprint("metrics")

UNMATCHED_ROUTE = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@bp.get("/metrics")
async def metrics(request: Request) -> HTTPResponse:
    """Prometheus text exposition of every worker's metrics.

    With ``METRICS_TOKEN`` set, only ``Authorization: Bearer <token>`` is answered (Prometheus
    sends it with ``authorization: {credentials: <token>}`` in its scrape config).
    """
    token = request.app.ctx.settings.metrics_token
    if token is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode("utf-8", "surrogateescape"), token.encode()):
            raise Unauthorized("/metrics needs the METRICS_TOKEN bearer token", scheme="Bearer")
    body = request.app.ctx.metrics.render()
    return HTTPResponse(body, content_type=CONTENT_TYPE)


class Children:
    """The labelled children of one metric, each looked up once.

    ``labels()`` validates and hashes its arguments under a lock on every call; on the hit path
    that cost more than the increment itself. The label sets are few (routes x outcomes).
    """

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._metric.labels(*labels)
        return child


class CacheMetricsObserver(CacheObserver):
    """Turns the cache's callbacks into Prometheus samples (cheap: counter increments)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._tally = metrics.tally
        self._lookups = Children(metrics.cache_lookups)
        self._stores = Children(metrics.cache_stores)
        self._commands = Children(metrics.backend_latency)

    def on_lookup(self, route: str, outcome: str) -> None:
        self._tally.inc(self._lookups(route, outcome))

    def on_store(self, route: str) -> None:
        self._tally.inc(self._stores(route))

    def on_invalidate(self, tag: str) -> None:
        self.metrics.cache_invalidations.labels(self.metrics.tag_label(tag)).inc()

    def on_error(self, route: str, operation: str) -> None:
        self.metrics.cache_errors.labels(route, operation).inc()

    def on_breaker_transition(self, old: str, new: str) -> None:
        self.metrics.breaker_transitions.labels(old, new).inc()
        self.metrics.breaker_state.set(BREAKER_STATES.get(new, -1))

    def on_backend_command(self, command: str, seconds: float) -> None:
        self._tally.observe(self._commands(command), seconds)


FLUSH_SECONDS = 1.0
"""How often a worker writes its tallied samples (see ``observability.metrics.Tally``)."""


async def _flush_every(metrics: Metrics, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        metrics.tally.flush()


async def _start_timer(request: Request) -> None:
    request.ctx.metrics_started = time.perf_counter()


class _RequestObserver:
    """The response middleware: counts and times every request by method, route and status."""

    __slots__ = ("_children", "_latency", "_requests", "_tally", "_worker_requests")

    def __init__(self, metrics: Metrics) -> None:
        self._tally = metrics.tally
        self._requests = Children(metrics.requests)
        self._latency = Children(metrics.request_latency)
        self._worker_requests = metrics.worker_requests
        self._children: dict[tuple[str, str | None, int], tuple[Any, Any]] = {}
        """(method, route name, status) -> both children: one lookup per request, without
        building the labels (``uri_template`` formats a string on every call)."""

    async def __call__(self, request: Request, response: HTTPResponse) -> None:
        started = getattr(request, "received_at", None)
        if started is None:
            started = getattr(request.ctx, "metrics_started", None)
        method = request.method if request.method in _METHODS else "OTHER"
        route = request.route
        key = (method, None if route is None else route.name, response.status)
        children = self._children.get(key)
        if children is None:
            labels = (method, request.uri_template or UNMATCHED_ROUTE, str(response.status))
            children = self._children[key] = (self._requests(*labels), self._latency(*labels))
        tally = self._tally
        tally.inc(children[0])
        if started is not None:
            tally.observe(children[1], time.perf_counter() - started)
        tally.inc(self._worker_requests)


def install_metrics(app: Sanic, metrics: Metrics | None = None) -> Metrics:
    """Wire metrics into ``app``; returns the ``Metrics`` (also on ``app.ctx.metrics``)."""
    metrics = metrics or Metrics()
    app.ctx.metrics = metrics
    _observe_response = _RequestObserver(metrics)
    # The timer starts before the cache's lookup (a hit short-circuits the rest of the request
    # middleware) and stops after every other response middleware, so a response the cache's
    # hook turns into a 304 is counted as one. Sanic runs request middleware from the highest
    # priority down and response middleware from the lowest up: both ends are +1,000,000.
    if not hasattr(app.request_class, "received_at"):
        # A request class that stamps its arrival (observability.request_id) saves a
        # middleware dispatch on every request, cache hits included.
        app.on_request(_start_timer, priority=1_000_000)
    app.on_response(_observe_response, priority=1_000_000)
    app.blueprint(bp)

    async def start_multiprocess(app: Sanic) -> None:
        app.ctx.metrics_dir_created = prepare_multiprocess_dir()

    async def stop_multiprocess(app: Sanic) -> None:
        created = getattr(app.ctx, "metrics_dir_created", None)
        if created:
            remove_multiprocess_dir(created)

    db_operations = Children(metrics.db_latency)

    async def start_worker(app: Sanic) -> None:
        metrics.breaker_state.set(BREAKER_STATES["closed"])
        instrument_client(connections.get("default"),
                          lambda operation, seconds:
                          metrics.tally.observe(db_operations(operation), seconds))
        app.ctx.metrics_flush = asyncio.ensure_future(_flush_every(metrics, FLUSH_SECONDS))

    async def worker_stopped(app: Sanic) -> None:
        task = getattr(app.ctx, "metrics_flush", None)
        if task is not None:
            task.cancel()
        metrics.tally.flush()
        mark_worker_dead(os.getpid())

    app.register_listener(start_multiprocess, "main_process_start")
    app.register_listener(stop_multiprocess, "main_process_stop")
    # After the database listener (priority 1000) opened the connection.
    app.register_listener(start_worker, "before_server_start")
    app.register_listener(worker_stopped, "after_server_stop")
    return metrics
