"""Health endpoints: liveness without I/O, a detailed check, and the cache's state.

- ``GET /health``: liveness for load balancers and Docker's HEALTHCHECK; touches nothing.
- ``GET /health/detailed``: database reachable (a ``SELECT 1`` and its latency), cache backend
  and breaker state, versions and uptime; 503 when the database does not answer.
- ``GET /health/cache``: the cache's statistics and breaker, ``latency_ms`` from a real PING;
  ``status`` is ``healthy`` when the configured backend serves and answers, ``degraded`` (still
  200: clients are served) while the in-process fallback serves instead of Redis or the PING
  fails, ``unhealthy`` (503) when no cache serves at all (``CACHE_ENABLED=false``). The same
  values appear as ``cache.status`` in ``/health/detailed``.

Nothing here shows a password: the Redis URL is the cache's redacted one, the database is
named by ``describe_database``, and error texts pass through ``redact``.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import platform
import time
from typing import Any

import sanic
from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse
from tortoise import connections

from handlers.responses import json_response
from middleware import CacheBackendError
from models.db import describe_database
from observability.logging import redact

log = logging.getLogger(__name__)

bp = Blueprint("health")

CHECK_TIMEOUT_SECONDS = 3.0
"""Longest a health check waits for the database or Redis before calling it down."""


def _app_version() -> str:
    try:
        return importlib.metadata.version("sanic-cached-api")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


VERSIONS = {"python": platform.python_version(), "sanic": sanic.__version__,
            "app": _app_version()}


@bp.before_server_start
async def _record_start(app: Sanic) -> None:
    app.ctx.started_at = time.monotonic()


@bp.after_server_start
async def _report_cache_backend(app: Sanic) -> None:
    """Say at start-up whether Redis answers (once every before_server_start listener, the
    cache's included, has run)."""
    cache = getattr(app.ctx, "cache", None)
    if cache is None or cache.tiers.configured_backend not in ("redis", "upstash"):
        return
    url = cache.tiers.redis_url_redacted or ""
    tls = "TLS" if url.startswith(("rediss://", "https://")) else "no TLS"
    what = "Upstash REST" if cache.tiers.configured_backend == "upstash" else "Redis"
    try:
        latency = await asyncio.wait_for(cache.ping(), timeout=CHECK_TIMEOUT_SECONDS)
    except (CacheBackendError, asyncio.TimeoutError) as exc:
        log.warning("%s unavailable, using in-memory cache until it answers (%s; %s)",
                    what, url, _error_text(exc))
        # As said: the first requests must not each wait out the connect timeout until the
        # breaker counts enough failures (a rediss:// URL to a plain server: 2 s apiece).
        cache.tiers.breaker.trip()
        return
    log.info("%s cache connected (%s): %s, PING %.2f ms", what, tls, url, latency)


def _error_text(exc: BaseException) -> str:
    text = str(exc) or "no answer"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        text = f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    return redact(f"{type(exc).__name__}: {text}")[:300]


@bp.get("/health")
async def health(request: Request) -> HTTPResponse:
    """Liveness probe: no database or cache call."""
    return json_response({"status": "ok"})


async def _database_check(request: Request) -> dict[str, Any]:
    result: dict[str, Any] = {
        "engine": describe_database(request.app.ctx.settings.database_url)}
    started = time.perf_counter()
    try:
        await asyncio.wait_for(connections.get("default").execute_query("SELECT 1"),
                               timeout=CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # any driver error means "not reachable": report, never raise
        log.warning("Health check: database %s unreachable", result["engine"], exc_info=True)
        result.update(status="down", latency_ms=None, error=_error_text(exc))
        return result
    result.update(status="ok", latency_ms=round((time.perf_counter() - started) * 1000, 3))
    return result


HEALTHY = "healthy"
DEGRADED = "degraded"
UNHEALTHY = "unhealthy"
DISABLED_REASON = "the response cache is disabled (CACHE_ENABLED=false)"


def _cache_status(cache: Any) -> str:
    """``healthy`` when what serves is what was configured, ``degraded`` on the fallback."""
    return HEALTHY if cache.tiers.backend_name == cache.tiers.configured_backend else DEGRADED


def _cache_summary(cache: Any) -> dict[str, Any]:
    if cache is None:
        return {"status": UNHEALTHY, "reason": DISABLED_REASON, "backend": None,
                "configured_backend": None, "redis_url": None, "redis_available": False,
                "breaker": None}
    stats = cache.stats()
    return {"status": _cache_status(cache), "backend": cache.tiers.backend_name,
            "configured_backend": cache.tiers.configured_backend,
            "redis_url": cache.tiers.redis_url_redacted,
            "redis_available": stats["redis_available"], "breaker": stats["breaker"]}


@bp.get("/health/detailed")
async def health_detailed(request: Request) -> HTTPResponse:
    """Database (503 when unreachable), cache backend and breaker, versions and uptime."""
    app = request.app
    database = await _database_check(request)
    started = getattr(app.ctx, "started_at", None)
    body = {
        "status": "ok" if database["status"] == "ok" else "error",
        "database": database,
        "cache": _cache_summary(getattr(app.ctx, "cache", None)),
        "versions": VERSIONS,
        "uptime_seconds": round(time.monotonic() - started, 3) if started is not None else None,
        "pid": os.getpid(),
        "workers": app.ctx.settings.workers,
    }
    return json_response(body, status=200 if database["status"] == "ok" else 503)


@bp.get("/health/cache")
async def health_cache(request: Request) -> HTTPResponse:
    """The cache's statistics and breaker; latency from a real PING of its backend."""
    cache = getattr(request.app.ctx, "cache", None)
    if cache is None:
        return json_response({"status": UNHEALTHY, "reason": DISABLED_REASON, "backend": None,
                              "latency_ms": None, "stats": {}, "breaker": {}}, status=503)
    body: dict[str, Any] = {"status": _cache_status(cache), "backend": cache.tiers.backend_name,
                            "configured_backend": cache.tiers.configured_backend,
                            "redis_url": cache.tiers.redis_url_redacted, "latency_ms": None}
    try:
        body["latency_ms"] = round(
            await asyncio.wait_for(cache.ping(), timeout=CHECK_TIMEOUT_SECONDS), 3)
    except (CacheBackendError, asyncio.TimeoutError) as exc:
        # The PING of the configured backend failed: whatever the breaker says, it is degraded.
        body.update(status=DEGRADED, error=_error_text(exc))
    stats = cache.stats()
    body["breaker"] = stats.pop("breaker")
    body["stats"] = stats
    return json_response(body)
