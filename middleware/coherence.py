"""Host-wide invalidation state shared by the worker processes of one Sanic server.

Two jobs:

1. *Local generations.* A fixed array of counters indexed by ``crc32(tag) % N`` (slot 0 is the
   local epoch). Every write bumps the slots of its tags, whatever Redis says, so the in-memory
   fallback of every worker on the host stops serving entries stored before the write. Two
   tags sharing a slot only cost an extra miss. Counters never decrease.
2. *Lost invalidations.* A write whose INCRs could not reach Redis (down, breaker open) is
   recorded: ``dirty`` (a shared sequence number) moves ahead of ``clean``, and the process
   keeps the tags it failed to send (bounded by ``max_pending``; past the bound they collapse
   into one epoch bump). Before any Redis read is served again, the process that reaches Redis
   reconciles: if every outstanding sequence number is its own, it replays those tags; otherwise
   (another worker lost a write whose tags it does not know) it bumps the global epoch, which
   invalidates every entry. ``clean`` then advances to the ``dirty`` value it covered.

The state lives in ``multiprocessing`` shared memory created in ``main_process_start`` (passed
to workers through ``app.shared_ctx``); without it (tests, one process) plain in-process arrays
give the same behaviour.

Residual limit: the state is per host. With several hosts, a write on host A while Redis is
unreachable from A is replayed when A reaches Redis again, but another host B that still
reaches Redis keeps serving the old entries until then, and B's in-memory fallback is not
told about A's writes at all (its entries expire with their TTL). One host, or Redis reachable
from every host, has no such window.
"""

from __future__ import annotations

import multiprocessing
import zlib
from array import array
from collections.abc import Iterable, MutableSequence
from contextlib import AbstractContextManager, nullcontext
from multiprocessing.context import BaseContext
from typing import Any

from middleware.keys import EPOCH_TAG, SizedMemo

__all__ = ["Coherence", "DEFAULT_SLOTS"]

DEFAULT_SLOTS = 4096

_DIRTY = 0
_CLEAN = 1


class Coherence:
    """Local generation counters plus the lost-invalidation ledger (see the module docstring)."""

    __slots__ = ("_counters", "_lock", "_overflow", "_pending", "_pending_count", "_seqs",
                 "_slot_memo", "_slots", "max_pending")

    def __init__(self, counters: MutableSequence[int], seqs: MutableSequence[int],
                 lock: AbstractContextManager[Any] | None = None, *,
                 max_pending: int = 1024) -> None:
        if len(counters) < 2 or len(seqs) != 2:
            raise ValueError("need at least 2 counters and exactly 2 sequence numbers")
        self._counters = counters
        self._seqs = seqs
        self._slots = len(counters) - 1
        self._lock: AbstractContextManager[Any] = lock if lock is not None else nullcontext()
        self.max_pending = max_pending
        self._pending: dict[int, tuple[str, ...]] = {}
        self._pending_count = 0
        self._slot_memo = SizedMemo()
        self._overflow = False

    @classmethod
    def local(cls, slots: int = DEFAULT_SLOTS, *, max_pending: int = 1024) -> Coherence:
        """State for one process (tests, a single worker)."""
        return cls(array("q", bytes(8 * (slots + 1))), array("q", [0, 0]),
                   max_pending=max_pending)

    @staticmethod
    def create_shared(slots: int = DEFAULT_SLOTS,
                      context: BaseContext | None = None) -> tuple[Any, Any, Any]:
        """Shared-memory parts for ``app.shared_ctx`` (created in ``main_process_start``).

        ``context`` defaults to the process-wide one, which Sanic has set to its start method
        (``spawn``) by the time ``main_process_start`` runs.
        """
        ctx: Any = context or multiprocessing
        return ctx.RawArray("q", slots + 1), ctx.RawArray("q", 2), ctx.Lock()

    @classmethod
    def attach(cls, parts: tuple[Any, Any, Any], *, max_pending: int = 1024) -> Coherence:
        """The state of a worker, from the parts ``create_shared`` made."""
        counters, seqs, lock = parts
        return cls(counters, seqs, lock, max_pending=max_pending)

    def slot(self, tag: str) -> int:
        """The counter slot of ``tag`` (stable across processes, unlike ``hash``)."""
        if tag == EPOCH_TAG:
            return 0
        return zlib.crc32(tag.encode()) % self._slots + 1

    @property
    def counters(self) -> MutableSequence[int]:
        """The counter array itself (read-only use: the hot tier checks its slots directly)."""
        return self._counters

    def slots(self, tags: Iterable[str]) -> tuple[int, ...]:
        """The counter slots of ``tags`` followed by the epoch's (0), memoised."""
        key = tags if isinstance(tags, tuple) else tuple(tags)
        slots: tuple[int, ...] | None = self._slot_memo.get(key)
        if slots is None:  # the same few tag tuples repeat: crc32 once per tuple, not per hit
            slots = (*(self.slot(tag) for tag in key), 0)
            self._slot_memo.put(key, slots, sum(map(len, key)) + 8 * len(slots))
        return slots

    def generations(self, tags: Iterable[str]) -> tuple[int, ...]:
        """Local counters of ``tags`` followed by the local epoch."""
        counters = self._counters
        return tuple([counters[slot] for slot in self.slots(tags)])

    def bump(self, tags: Iterable[str]) -> None:
        """A write happened: every worker's in-memory entries for ``tags`` become stale."""
        with self._lock:
            for slot in {self.slot(tag) for tag in tags}:
                self._counters[slot] += 1

    # -- lost invalidations -------------------------------------------------------------

    @property
    def needs_reconcile(self) -> bool:
        """True while some write on this host has not reached Redis (cheap: two reads)."""
        return self._seqs[_DIRTY] != self._seqs[_CLEAN] or bool(self._pending)

    @property
    def outstanding(self) -> int:
        """How many lost writes on this host await reconciliation."""
        return int(self._seqs[_DIRTY] - self._seqs[_CLEAN])

    def record_lost(self, tags: Iterable[str]) -> None:
        """Remember a write whose tags could not be sent to Redis."""
        tags = tuple(tags)
        with self._lock:
            self._seqs[_DIRTY] += 1
            seq = int(self._seqs[_DIRTY])
        if self._overflow:
            return
        if self._pending_count + len(tags) > self.max_pending:
            self._overflow = True
            self._pending.clear()
            self._pending_count = 0
            return
        self._pending[seq] = tags
        self._pending_count += len(tags)

    def plan(self) -> tuple[tuple[str, ...], int] | None:
        """What to send to Redis before serving from it: ``(tags, covers_up_to)`` or ``None``.

        The tags are this process's lost tags when every outstanding write is its own, else
        ``(EPOCH_TAG,)``.
        """
        dirty = int(self._seqs[_DIRTY])
        clean = int(self._seqs[_CLEAN])
        self._forget(clean)
        if dirty == clean:
            return None
        own = [self._pending.get(seq) for seq in range(clean + 1, dirty + 1)]
        if self._overflow or any(tags is None for tags in own):
            return (EPOCH_TAG,), dirty
        replay = sorted({tag for tags in own if tags for tag in tags})
        return tuple(replay) or (EPOCH_TAG,), dirty

    def reconciled(self, up_to: int) -> None:
        """The plan covering sequence numbers up to ``up_to`` reached Redis."""
        with self._lock:
            if self._seqs[_CLEAN] < up_to:
                self._seqs[_CLEAN] = up_to
        self._forget(up_to)
        if not self._pending:
            self._overflow = False

    def _forget(self, up_to: int) -> None:
        for seq in [seq for seq in self._pending if seq <= up_to]:
            self._pending_count -= len(self._pending.pop(seq))
