"""The interface every backend implements, and the one error it raises."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["CacheBackend", "CacheBackendError"]


class CacheBackendError(Exception):
    """A backend operation failed; raised ``from`` the original error.

    ``transient`` is True for connection errors, timeouts and the error replies of a Redis that
    cannot serve right now (``LOADING``, ``BUSY``, ``MASTERDOWN``, ...): what the circuit breaker
    counts. False for errors Redis answered deliberately (wrong type, out of memory, bad
    command), which say nothing about its reachability.

    ``incident`` is the underlying failure. Every call waiting on one connection when it times
    out or drops gets the same one, so the breaker counts that incident once, not once per
    request in flight. ``None``: the error is its own incident.
    """

    def __init__(self, message: str, *, transient: bool = True,
                 incident: object | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.incident = incident


@runtime_checkable
class CacheBackend(Protocol):
    """Byte values under string keys, TTLs, and integer counters for generations.

    ``shared`` is True when the backend's state is shared by every process and host (Redis):
    the cache then keeps its generation counters in it. A process-local backend (memory) gets
    its generations from the host-wide ``coherence`` state instead.
    """

    name: str
    shared: bool

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values of ``keys`` in order (``None`` for missing): one round trip (MGET)."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds."""
        ...

    async def delete(self, keys: Sequence[str]) -> int:
        """Remove ``keys``; returns how many existed."""
        ...

    async def incr_many(self, keys: Sequence[str]) -> list[int]:
        """Increment counters (missing counts as 0, no expiry): one round trip."""
        ...

    async def ping(self) -> float:
        """Round-trip latency of a real PING in milliseconds."""
        ...

    async def close(self) -> None:
        """Release connections; the backend is not used afterwards."""
        ...
