"""Generation numbers: how an entry is known to be current, and how a write ends it.

Entries are validated by generation numbers, never deleted by pattern: each tag has a counter
(``<ns>:gen:<tag>`` in Redis, a slot of ``coherence`` for the in-memory tier) plus one global
epoch. A lookup reads the entry and the current generations of its tags in ONE round trip
(``MGET``; a counter found missing is first created at a random base, see
``backends.incarnation``); a hit needs the generations stored in the record to equal the
current ones. A miss keeps the generations it read *before* the handler ran and stores the
record under them, so a write that lands while a slow handler runs leaves that record already
invalid. A write bumps its tags (one pipelined round trip). Redis commands: hit 1, miss 2
(MGET + SET), write 1.

A bump that cannot reach Redis is remembered by ``coherence`` and replayed by
``Tiers.select`` before this host reads from Redis again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from middleware.backends.base import CacheBackend, CacheBackendError
from middleware.hot import HotState
from middleware.keys import EPOCH_TAG, SizedMemo, generation_key
from middleware.lookup import Lookup
from middleware.tiers import Report, Tiers

__all__ = ["Generations"]

log = logging.getLogger(__name__)


def _gen(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        # Someone overwrote a counter: fail open (uncached) rather than guess.
        raise CacheBackendError(f"generation counter holds {value[:20]!r}",
                                transient=False) from None


class Generations:
    """The generation counters of the tags in Redis, read with an entry and bumped on a write
    (the host's local counters are ``tiers.coherence``'s)."""

    def __init__(self, tiers: Tiers, namespace: str, *, report: Report) -> None:
        self._tiers = tiers
        self._namespace = namespace
        self._report = report
        self._keys = SizedMemo()

    def keys(self, tags: Sequence[str]) -> tuple[str, ...]:
        """``(gen keys of tags..., epoch key)``, memoised."""
        key = tuple(tags)
        cached: tuple[str, ...] | None = self._keys.get(key)
        if cached is None:
            ns = self._namespace
            cached = (*(generation_key(ns, t) for t in key), generation_key(ns, EPOCH_TAG))
            self._keys.put(key, cached, sum(map(len, key)) + sum(map(len, cached)))
        return cached

    async def read(self, tier: CacheBackend, key: str, tags: Sequence[str],
                   hot_state: HotState | None) -> tuple[Lookup, bytes | None]:
        """One ``MGET`` of the entry and its generations in Redis; what it read is taught to
        the hot tier when ``hot_state`` is given."""
        gen_keys = self.keys(tags)
        tiers = self._tiers
        start = time.perf_counter()
        values = await tier.get_many([key, *gen_keys])
        self._report("MGET", start)
        tiers.breaker.record_success()
        raw = values[0]
        if None in values[1:]:
            # A counter Redis does not have (never bumped, evicted, lost in a restart): no
            # entry can be current. Create it at a random base, so an older entry can never
            # meet its value, and store the miss under that (see backends.incarnation).
            raw = None
            start = time.perf_counter()
            generations = tuple(await tier.init_many(gen_keys))
            self._report("INIT", start)
        else:
            generations = tuple(_gen(value) for value in values[1:])
        found = Lookup(key, tier, generations)
        hot = tiers.hot
        if hot_state is not None and hot is not None:
            hot.learn(gen_keys, generations, hot_state.seq)
            found.hot = hot_state
        return found, raw

    async def bump(self, tags: tuple[str, ...]) -> None:
        """Bump ``tags``: the host's local generations first (every worker's memory tier), then
        the Redis counters. If Redis cannot be reached the tags are remembered as lost and
        replayed (or the epoch bumped) before this host serves from Redis again; the error is
        re-raised for the fail-open boundary to log."""
        tiers = self._tiers
        tiers.coherence.bump(tags)
        if tiers.remote is None:
            return
        gen_keys = [generation_key(self._namespace, t) for t in tags]
        hot = tiers.hot
        if hot is not None:
            hot.forget(gen_keys)  # before the INCR is sent: nothing read from now is learned
        try:
            tier = await tiers.select()
            start = time.perf_counter()
            if tier.shared:
                await tier.incr_many(gen_keys)
                if hot is not None:
                    hot.forget(gen_keys)  # and nothing read before it landed
        except BaseException:
            # A backend error, or the request cancelled (client gone) mid-INCR after its
            # write committed: either way the INCRs may not have landed, so replay them.
            tiers.coherence.record_lost(tags)
            raise
        if not tier.shared:
            tiers.coherence.record_lost(tags)
            log.info("Redis unavailable: invalidation of %s kept for replay", ", ".join(tags))
            return
        self._report("INCR", start)
        tiers.breaker.record_success()
