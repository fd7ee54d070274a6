"""The hot tier (L1): each worker's own copy of Redis entries, served with zero Redis commands.

A Redis hit costs a round trip (``MGET`` of the entry and its generations). The hot tier
keeps decoded records in the worker's memory together with what it knows of the generations
they depend on, and serves a record when, at the moment of the request:

1. the invalidation channel (``backends.subscriber``) is healthy,
2. every generation the record was stored under is *known* to be current: the value was read
   from Redis by an ``MGET`` sent while the channel was healthy, and no invalidation message
   (nor a local write) has named that counter since the ``MGET`` was sent,
3. the host's local generations (``coherence``, bumped by any worker of this host before its
   write's response leaves) still equal those read before the record was put here, and
4. its TTL has not run out.

*Known* values are forgotten when a message names their counter, when this worker writes
(before its ``INCR`` is sent), and all at once whenever the channel's health changes, on a
``*`` message (the epoch was reset: Redis restarted), or when the breaker changes state. A
value read by an ``MGET`` that was in flight while its counter was named is not learned
(``seq`` below), so a reply overtaken by a message cannot resurrect an old value.

Coherence bound: a write acknowledged to its client is seen by every worker of every
instance for any request that starts after the write's message reached that worker's socket
(on loopback: before the write's response leaves the writer; across hosts: one network hop).
What breaks it: a channel backlog shorter than the heartbeat ``timeout`` (a message still in
Redis's output buffer), and a write whose ``INCR`` could not reach Redis (as for the Redis
tier: replayed when this host reaches Redis again).

The entries are bounded like the in-process fallback (``CACHE_MEMORY_MAX_ENTRIES`` and
``CACHE_MEMORY_MAX_BYTES``); the fallback and the hot tier are never both in use (one needs
the breaker open, the other closed; each is flushed on the way).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence

import orjson

from middleware.record import Record

__all__ = ["HotState", "HotTier"]

_Entry = tuple[Record, float, tuple[str, ...], tuple[int, ...], tuple[int, ...], int]


class HotState:
    """What a Redis lookup noted for the hot tier before it read: the entry's generation keys,
    the host's local slots and their values, the tier's ``seq``, and the entry's TTL."""

    __slots__ = ("gen_keys", "local", "seq", "slots", "ttl")

    def __init__(self, gen_keys: tuple[str, ...], slots: tuple[int, ...],
                 local: tuple[int, ...], seq: int, ttl: float) -> None:
        self.gen_keys = gen_keys
        self.slots = slots
        self.local = local
        self.seq = seq
        self.ttl = ttl


log = logging.getLogger(__name__)

_MAX_KNOWN = 100_000
"""Known counters kept before starting over (a memory bound; each costs one more MGET)."""

_MAX_RECENT = 10_000


class HotTier:
    """The worker's L1 (see the module docstring)."""

    __slots__ = ("_bytes", "_clock", "_entries", "_floor", "_known", "_recent", "healthy",
                 "hits", "max_bytes", "max_entries", "seq")

    def __init__(self, max_entries: int, max_bytes: int, *,
                 clock: Callable[[], float]) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        # key -> (record, expires, its generation keys, its local slots, their values, size)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._known: dict[str, int] = {}
        self._recent: dict[str, int] = {}
        self.seq = 0
        """Bumped by every invalidation seen; an MGET remembers the value it started at."""
        self._floor = 0
        self.healthy = False
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    # -- the request path ----------------------------------------------------------------

    def get(self, key: str, counters: Sequence[int]) -> Record | None:
        """The record to serve for ``key``, or None (see the module docstring). ``counters``:
        the host's local generation counters, checked at the slots the entry depends on."""
        entry = self._entries.get(key)
        if entry is None or not self.healthy:
            return None
        record, expires, gen_keys, slots, local, _ = entry
        for slot, value in zip(slots, local):
            if counters[slot] != value:
                self._drop(key)
                return None
        if self._clock() >= expires:
            self._drop(key)
            return None
        known = self._known
        for gen_key, value in zip(gen_keys, record.generations):
            if known.get(gen_key) != value:
                return None
        self._entries.move_to_end(key)
        self.hits += 1
        return record

    def learn(self, gen_keys: Sequence[str], values: Sequence[int], seq: int) -> None:
        """Values an ``MGET`` sent at ``seq`` read; kept unless something named them since."""
        if not self.healthy or seq < self._floor:
            return
        recent = self._recent
        known = self._known
        if len(known) >= _MAX_KNOWN:
            self.flush()
            return
        for gen_key, value in zip(gen_keys, values):
            # Named at or before ``seq``: before the MGET was sent, so it read the new value.
            if recent.get(gen_key, -1) <= seq:
                known[gen_key] = value

    def put(self, key: str, record: Record, expires: float, state: HotState) -> None:
        """Keep ``record`` (valid from Redis, or just stored there) for later hits."""
        if not self.healthy or state.seq < self._floor:
            return
        size = len(record.body) + len(key) + 256
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[5]
        self._entries[key] = (record, expires, state.gen_keys, state.slots, state.local, size)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped[5]

    # -- invalidation ----------------------------------------------------------------------

    def forget(self, gen_keys: Sequence[str]) -> None:
        """These counters change (a write here, or a message): unknown until read again."""
        self.seq += 1
        seq = self.seq
        known = self._known
        recent = self._recent
        if len(recent) >= _MAX_RECENT:
            # Past the bound, forget which: nothing read before now may be learned.
            recent.clear()
            self._floor = seq
        for gen_key in gen_keys:
            known.pop(gen_key, None)
            recent[gen_key] = seq

    def on_message(self, payload: bytes) -> None:
        """An invalidation message: the JSON list of bumped counters, or ``*`` (everything)."""
        if payload == b"*":
            self.flush()
            return
        try:
            keys = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("Invalidation channel: unreadable message; flushing the hot tier")
            self.flush()
            return
        if isinstance(keys, list):
            self.forget([key for key in keys if isinstance(key, str)])
        else:
            self.flush()

    def on_health(self, healthy: bool) -> None:
        """The channel's health changed: what was learned before may have missed messages."""
        self.flush()
        self.healthy = healthy

    def flush(self) -> None:
        """Forget every known value and entry; nothing read before now may be learned."""
        self.seq += 1
        self._floor = self.seq
        self._known.clear()
        self._recent.clear()
        self._entries.clear()
        self._bytes = 0

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[5]
