"""Single flight across the worker processes of one host: concurrent misses on one key in
different workers run the handler once.

``SingleFlight`` (``middleware.stampede``) coalesces misses inside one process. With several
workers, a write that invalidates a busy key sends each worker's next reader to the handler,
so N workers cost up to N database queries and N stores for one key, and the 2-worker hit rate
fell below the 1-worker one. Each leading miss here also takes a *lease*: a slot of a shared
array, indexed by ``crc32(key) % N`` and holding the lease's deadline (``CLOCK_MONOTONIC``
nanoseconds, the same clock in every process of a host) and the leader's pid. A miss in another
process that finds the slot leased waits (polling shared memory, no Redis command) until the
lease is released or expires, then reads the shared tier again: normally a hit on the entry
the leader just stored. It costs nothing on a hit, no Redis command on a miss, and one more
``MGET`` for a waiter, which is answered by the leader's entry instead of the database.

Two keys sharing a slot only make one wait for the other's handler and then miss. Claiming is
not atomic across processes (no lock on the miss path): two workers that claim in the same
instant both lead, as without leases. A leader that dies holds its slot until the deadline
(``CACHE_STAMPEDE_TIMEOUT``), like a hung leader inside one process.

The state lives in ``multiprocessing`` shared memory created in ``main_process_start`` (passed
through ``app.shared_ctx``); without it (one process) there is nothing to share and no leases.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
import zlib
from collections.abc import MutableSequence
from multiprocessing.context import BaseContext
from typing import Any

__all__ = ["DEFAULT_SLOTS", "Lease", "HostLeases"]

DEFAULT_SLOTS = 4096
_POLL = 0.001
"""Seconds between two looks at a leased slot: a miss takes milliseconds."""

Lease = tuple[int, int]
"""(slot, deadline): what a leader holds and releases, or what a waiter waits out."""


class HostLeases:
    """Leases of in-flight misses, shared by the worker processes of one host."""

    __slots__ = ("_deadlines", "_owners", "_pid", "_slots", "waited")

    def __init__(self, deadlines: MutableSequence[int], owners: MutableSequence[int]) -> None:
        if len(deadlines) != len(owners) or not deadlines:
            raise ValueError("deadlines and owners need the same, non-zero length")
        self._deadlines = deadlines
        self._owners = owners
        self._slots = len(deadlines)
        self._pid = os.getpid()
        self.waited = 0
        """Misses that waited for another process's lease."""

    @staticmethod
    def create_shared(slots: int = DEFAULT_SLOTS,
                      context: BaseContext | None = None) -> tuple[Any, Any]:
        """Shared-memory parts for ``app.shared_ctx`` (created in ``main_process_start``)."""
        ctx: Any = context or multiprocessing
        return ctx.RawArray("q", slots), ctx.RawArray("q", slots)

    @classmethod
    def attach(cls, parts: tuple[Any, Any]) -> HostLeases:
        """The leases over parts made by ``create_shared`` (in a worker process)."""
        return cls(*parts)

    def _slot(self, key: str) -> int:
        return zlib.crc32(key.encode("utf-8", "surrogateescape")) % self._slots

    def held_elsewhere(self, key: str) -> Lease | None:
        """The live lease another process holds on ``key``'s slot, if any."""
        slot = self._slot(key)
        deadline = self._deadlines[slot]
        if deadline > time.monotonic_ns() and self._owners[slot] != self._pid:
            return slot, deadline
        return None

    def claim(self, key: str, timeout: float) -> Lease:
        """Lease ``key``'s slot for at most ``timeout`` seconds; end it with ``release``."""
        slot = self._slot(key)
        deadline = time.monotonic_ns() + int(timeout * 1e9)
        self._owners[slot] = self._pid
        self._deadlines[slot] = deadline
        return slot, deadline

    def release(self, lease: Lease) -> None:
        """End ``lease``, unless its slot has been leased again since (it expired)."""
        slot, deadline = lease
        if self._deadlines[slot] == deadline:
            self._deadlines[slot] = 0

    async def wait(self, lease: Lease, timeout: float) -> None:
        """Until ``lease`` (held by another process) is released, expires, or ``timeout``."""
        self.waited += 1
        slot, deadline = lease
        give_up = min(deadline, time.monotonic_ns() + int(timeout * 1e9))
        deadlines = self._deadlines
        while deadlines[slot] == deadline and time.monotonic_ns() < give_up:
            await asyncio.sleep(_POLL)
