"""``install_cache``: the one call that puts the response cache on a Sanic app.

It builds the engine (``cache.ResponseCache``) and the hooks (``sanic.CacheHooks``), shares
the host-wide state between the server's worker processes (``coherence`` and ``leases`` in
``app.shared_ctx``, created in the main process), binds the rules to the app's routes once
they all exist, and opens and closes the backends with the server.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sanic import Sanic

from middleware.backends.base import CacheBackend
from middleware.cache import ResponseCache
from middleware.coherence import Coherence
from middleware.leases import HostLeases
from middleware.observer import CacheObserver
from middleware.rules import CacheRule, InvalidationRule
from middleware.sanic import CacheHooks, Identify
from middleware.settings import CacheSettings

__all__ = ["install_cache"]

_SHARED_CTX_NAME = "response_cache_coherence"
_SHARED_LEASES_NAME = "response_cache_leases"


def install_cache(app: Sanic[Any, Any],
                  rules: Iterable[CacheRule | InvalidationRule] = (),
                  settings: CacheSettings | None = None, backend: CacheBackend | None = None,
                  identify: Identify | None = None,
                  observer: CacheObserver | None = None) -> ResponseCache:
    """Install the response cache on ``app`` in one call; returns it (also ``app.ctx.cache``).

    ``backend``: ``None`` selects Redis from ``settings.redis_url`` (with memory fallback)
    or memory alone; pass a ``MemoryBackend`` or a ``RedisBackend`` to choose explicitly.
    ``identify(request) -> str | None`` gives the user id for per-user rules.
    """
    settings = settings or CacheSettings.from_env()
    cache = ResponseCache(settings, backend, observer=observer)
    hooks = CacheHooks(cache, rules, identify)
    app.ctx.cache = cache
    app.ctx.cache_hooks = hooks

    async def create_shared_state(app: Sanic[Any, Any]) -> None:
        setattr(app.shared_ctx, _SHARED_CTX_NAME, Coherence.create_shared())
        setattr(app.shared_ctx, _SHARED_LEASES_NAME, HostLeases.create_shared())

    async def open_cache(app: Sanic[Any, Any]) -> None:
        parts = getattr(app.shared_ctx, _SHARED_CTX_NAME, None)
        if parts is not None:
            cache.tiers.coherence = Coherence.attach(parts, max_pending=settings.max_pending_tags)
        leases = getattr(app.shared_ctx, _SHARED_LEASES_NAME, None)
        if leases is not None:
            cache.leases = HostLeases.attach(leases)
        hooks.bind(app.router.routes)
        await cache.open()

    async def stop_refreshes(app: Sanic[Any, Any]) -> None:
        await hooks.refreshes.close()  # before the database they may use goes away

    async def close_cache(app: Sanic[Any, Any]) -> None:
        await cache.close()

    app.register_listener(create_shared_state, "main_process_start")
    # Last among the start-up listeners: sanic-ext adds its automatic HEAD routes (named
    # ``<route>_head``) in ``before_server_start`` too, and they must get the GET rule.
    app.register_listener(open_cache, "before_server_start", priority=-100_000)
    app.register_listener(stop_refreshes, "before_server_stop")
    app.register_listener(close_cache, "after_server_stop")
    app.register_middleware(hooks.on_request, "request")
    app.register_middleware(hooks.on_response, "response")
    return cache
