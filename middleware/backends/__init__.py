"""Cache backends behind one small interface (``base.CacheBackend``)."""

from __future__ import annotations

from middleware.backends.base import CacheBackend, CacheBackendError
from middleware.backends.memory import MemoryBackend
from middleware.backends.redis import RedisBackend

__all__ = ["CacheBackend", "CacheBackendError", "MemoryBackend", "RedisBackend"]
