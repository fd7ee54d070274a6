"""Helpers for application code: cache values and clear prefixes without touching Redis.

They resolve the cache from the running app (the current request's app, else
``Sanic.get_app()``) unless ``app=`` or ``cache=`` is given, and they fail open like the
middleware: a backend error is logged and counted, ``get_cached`` then answers ``None`` and
``set_cached`` does nothing. ``invalidate_cache`` never loses a clear: when Redis is
unreachable it is replayed before this host serves from Redis again.

Read-through use (``get_cached`` miss, compute, ``set_cached``) inside a request is race-free
like a response miss: ``set_cached`` stores the value under the generations the request's
``get_cached`` read *before* computing it, so an ``invalidate_cache`` that lands meanwhile
leaves the value already stale. Outside a request (or without a prior ``get_cached``), the
generations are read when ``set_cached`` runs: compute the value after any write it must see.

Keys are hierarchical with ``:``: ``invalidate_cache("user:5")`` clears ``get_cached("user:5")``,
``get_cached("user:5:profile")`` and every response whose rule tags start with ``user:5``.
"""

from __future__ import annotations

from typing import Any

import orjson
from sanic import Request, Sanic

from middleware.backends.base import CacheBackend, CacheBackendError
from middleware.cache import HELPERS, ResponseCache
from middleware.keys import app_key, expand_tag

__all__ = ["get_cached", "invalidate_cache", "resolve_cache", "set_cached"]

_SEEN = "response_cache_helper_misses"
Seen = dict[str, tuple[CacheBackend, tuple[int, ...]]]


def _misses_of_this_request(create: bool) -> Seen | None:
    """``{key: (tier, generations)}`` of this request's ``get_cached`` misses (None: no request)."""
    try:
        request = Request.get_current()
    except Exception:  # noqa: BLE001 - sanic raises SanicException outside a request
        return None
    seen: Seen | None = getattr(request.ctx, _SEEN, None)
    if seen is None and create:
        seen = {}
        setattr(request.ctx, _SEEN, seen)
    return seen


def resolve_cache(app: Sanic[Any, Any] | None = None,
                  cache: ResponseCache | None = None) -> ResponseCache:
    """The cache of ``app`` / the current request's app / the only running app."""
    if cache is not None:
        return cache
    if app is None:
        try:
            app = Request.get_current().app
        except Exception:  # noqa: BLE001 - sanic raises SanicException outside a request
            app = Sanic.get_app()
    found = getattr(app.ctx, "cache", None)
    if not isinstance(found, ResponseCache):
        raise RuntimeError(f"no response cache installed on app {app.name!r}")
    return found


async def get_cached(key: str, *, app: Sanic[Any, Any] | None = None,
                     cache: ResponseCache | None = None) -> Any | None:
    """The value stored under ``key`` by ``set_cached``, or ``None`` (missing, stale, error)."""
    target = resolve_cache(app, cache)
    try:
        found = await target.lookup(HELPERS, app_key(target.settings.namespace, key),
                                    expand_tag(key), lead=False, count=False)
    except CacheBackendError as exc:
        target.failed(exc, HELPERS, "get_cached")
        return None
    if found.record is None:
        seen = _misses_of_this_request(create=True)
        if seen is not None:  # the first (oldest) generations are the safe ones to keep
            seen.setdefault(key, (found.tier, found.generations))
        return None
    return orjson.loads(found.record.body)


async def set_cached(key: str, value: Any, ttl: float = 60, *,
                     app: Sanic[Any, Any] | None = None,
                     cache: ResponseCache | None = None) -> None:
    """Store an orjson-serialisable ``value`` under ``key`` for ``ttl`` seconds."""
    target = resolve_cache(app, cache)
    body = orjson.dumps(value)
    try:
        # A refresh lookup reads the current generations (the entry itself is ignored).
        found = await target.lookup(HELPERS, app_key(target.settings.namespace, key),
                                    expand_tag(key), refresh=True, lead=False, count=False)
        seen = _misses_of_this_request(create=False)
        missed = seen.pop(key, None) if seen else None
        if missed is not None:
            if missed[0] is not found.tier:
                # The breaker moved between the miss and now: the value was computed against
                # the other tier's generations, and no generation read now may vouch for it.
                return
            # The value was computed after that miss: store it under what the miss read.
            found.generations = missed[1]
        record = target.make_record(found, status=200, content_type="application/json",
                                    headers=(), body=body)
        await target.store(found, record, ttl, HELPERS)
    except CacheBackendError as exc:
        target.failed(exc, HELPERS, "set_cached")


async def invalidate_cache(prefix: str, *, app: Sanic[Any, Any] | None = None,
                           cache: ResponseCache | None = None) -> None:
    """Clear every value and response under the tag ``prefix`` (see the module docstring)."""
    target = resolve_cache(app, cache)
    try:
        await target.invalidate((prefix,), route=HELPERS)
    except CacheBackendError as exc:
        target.failed(exc, HELPERS, "invalidate_cache")
