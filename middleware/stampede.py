"""Single flight per key: concurrent misses on one key in one process run the handler once.

The first miss leads (runs the handler); later misses on the same key wait on the leader's
future and answer from the record it stored. A leader whose response is not stored (error,
non-200, too big) or that never finishes resolves ``None`` and its waiters run their own
handler; a waiter gives up after ``timeout`` seconds and releases the flight.
"""

from __future__ import annotations

import asyncio

from middleware.record import Record

__all__ = ["SingleFlight"]


class SingleFlight:
    """In-flight misses of one process, by cache key."""

    __slots__ = ("_flights", "coalesced")

    def __init__(self) -> None:
        self._flights: dict[str, tuple[asyncio.Future[Record | None], tuple[int, ...]]] = {}
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._flights)

    def joinable(self, key: str,
                 generations: tuple[int, ...]) -> asyncio.Future[Record | None] | None:
        """The leader's future for ``key`` if it runs under the same ``generations``.

        A leader that started before a write (other generations) computes data the caller
        must not serve, so the caller does not wait for it; it leads a new flight instead.
        """
        flight = self._flights.get(key)
        if flight is None or flight[1] != generations:
            return None
        return flight[0]

    def lead(self, key: str, generations: tuple[int, ...]) -> asyncio.Future[Record | None]:
        """Register the caller as the leader for ``key``; end it with ``release``."""
        future: asyncio.Future[Record | None] = asyncio.get_running_loop().create_future()
        self._flights[key] = (future, generations)
        return future

    def release(self, key: str, future: asyncio.Future[Record | None],
                record: Record | None) -> None:
        """Hand ``record`` (or ``None``: not stored) to the waiters and end the flight."""
        flight = self._flights.get(key)
        if flight is not None and flight[0] is future:
            del self._flights[key]
        if not future.done():
            future.set_result(record)

    async def wait(self, key: str, future: asyncio.Future[Record | None],
                   timeout: float) -> Record | None:
        """Wait for the leader; ``None`` when it stored nothing or took too long."""
        self.coalesced += 1
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            self.release(key, future, None)
            return None
