"""A pluggable response cache for Sanic: Redis behind a circuit breaker, memory fallback.

Install it with one call::

    from middleware import CacheRule, InvalidationRule, install_cache

    install_cache(app, rules=[
        CacheRule("/api/posts", ttl=30, query=("limit", "cursor"), tags=("posts:feed",)),
        InvalidationRule("POST", "/api/posts", clears=("posts:feed",)),
    ])

This package imports nothing from the application; the application wires it in ``app.py``.
"""

from __future__ import annotations

from middleware.backends import CacheBackend, CacheBackendError, MemoryBackend, RedisBackend
from middleware.breaker import CircuitBreaker
from middleware.cache import ResponseCache
from middleware.helpers import get_cached, invalidate_cache, set_cached
from middleware.observer import CacheObserver
from middleware.rules import CacheRule, InvalidationRule
from middleware.install import install_cache
from middleware.settings import CacheSettings, CacheSettingsError

__all__ = [
    "CacheBackend", "CacheBackendError", "CacheObserver", "CacheRule", "CacheSettings",
    "CacheSettingsError", "CircuitBreaker", "InvalidationRule", "MemoryBackend", "RedisBackend",
    "ResponseCache", "get_cached", "install_cache", "invalidate_cache", "set_cached",
]
