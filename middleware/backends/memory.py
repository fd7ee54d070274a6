"""In-process backend: an LRU bounded by entries and by bytes, TTL-aware, injectable clock."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from middleware.backends.base import random_base

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """A per-process LRU of byte values with expiry.

    Counters (``incr_many``) live apart from the LRU and never expire, so a counter can never
    fall back to an old value and revalidate an entry stored under it.
    """

    name = "memory"
    shared = False

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 64 * 1024 * 1024, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be >= 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._data: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._counters: dict[str, int] = {}
        self._bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    @property
    def size_bytes(self) -> int:
        """Bytes held by values and keys."""
        return self._bytes

    def _get(self, key: str, now: float) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            counter = self._counters.get(key)
            return None if counter is None else str(counter).encode()
        value, expires = item
        if expires <= now:
            self._remove(key)
            return None
        self._data.move_to_end(key)
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        now = self._clock()
        return [self._get(key, now) for key in keys]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        size = len(value) + len(key)
        if key in self._data:
            self._remove(key)
        if size > self.max_bytes or ttl <= 0:
            return
        self._data[key] = (value, self._clock() + ttl)
        self._bytes += size
        while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._data))
            self._remove(oldest)
            self.evictions += 1

    async def delete(self, keys: Sequence[str]) -> int:
        removed = 0
        for key in keys:
            if key in self._data:
                self._remove(key)
                removed += 1
        return removed

    async def incr_many(self, keys: Sequence[str]) -> list[int]:
        out = []
        for key in keys:
            value = self._counters.get(key, random_base()) + 1
            self._counters[key] = value
            out.append(value)
        return out

    async def init_many(self, keys: Sequence[str]) -> list[int]:
        return [self._counters.setdefault(key, random_base()) for key in keys]

    async def ping(self) -> float:
        return 0.0

    async def close(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Drop every entry (counters are kept: they must never go back)."""
        self._data.clear()
        self._bytes = 0

    def _remove(self, key: str) -> None:
        value, _ = self._data.pop(key)
        self._bytes -= len(value) + len(key)
