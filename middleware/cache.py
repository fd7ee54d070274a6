"""ResponseCache: lookups, stores and invalidations over the selected backend.

Entries are validated by generation numbers, never deleted by pattern (``generations``): a
lookup reads the entry with the current generations of its tags in one round trip, a miss
stores its record under the generations it read before the handler ran, and a write bumps
its tags. Which tier serves is ``tiers``'s choice; what is counted, ``stats``'s report.

A rule with stale windows (``middleware.stale``) lets a lookup classify a current entry by its
age: fresh (a hit), stale while revalidating (served, and the caller leads the refresh), or
stale if error (a miss that keeps the entry for the error path).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence

from middleware.backends.base import CacheBackend, CacheBackendError
from middleware.breaker import CLOSED
from middleware.coherence import Coherence
from middleware.encoding import Representations, compress as compress_body, with_vary
from middleware.generations import Generations
from middleware.leases import HostLeases
from middleware.lookup import BYPASS, HELPERS, HIT, MISS, STALE, Lookup
from middleware.observer import CacheObserver, NullObserver
from middleware.policy import etag_for
from middleware.hot import HotState, HotTier
from middleware.record import DecodedRecords, Record, RecordError, decode, encode
from middleware.settings import CacheSettings
from middleware.stale import Freshness, Staleness
from middleware.stampede import SingleFlight
from middleware.stats import CacheStats
from middleware.tiers import Tiers

__all__ = ["HIT", "MISS", "STALE", "Lookup", "ResponseCache"]

log = logging.getLogger(__name__)


class ResponseCache(CacheStats):
    """The cache engine behind the Sanic hooks and the application helpers.

    ``backend``: a shared backend (``RedisBackend``) is used with a ``MemoryBackend`` fallback
    behind the circuit breaker; a ``MemoryBackend`` is used alone. ``None`` builds Redis from
    ``settings.redis_url`` in ``open()`` (or memory alone when it is unset). Its counters and
    ``stats()`` are those of ``CacheStats`` (``middleware.stats``).
    """

    def __init__(self, settings: CacheSettings | None = None,
                 backend: CacheBackend | None = None, *,
                 observer: CacheObserver | None = None,
                 coherence: Coherence | None = None,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.settings = settings = settings or CacheSettings()
        self.observer: CacheObserver = observer or NullObserver()
        self._timed = observer is not None and not isinstance(observer, NullObserver)
        self.clock = clock
        """The wall clock of ``stored_at``, ages and stale windows. Tests may replace it
        before the app starts (the hot tier takes it in ``open``)."""
        self.tiers = Tiers(settings, backend, observer=self.observer, report=self._report,
                           coherence=coherence, monotonic=monotonic)
        self.flights = SingleFlight()
        self.leases: HostLeases | None = None
        """Single flight across this host's workers (``middleware.leases``), attached by the
        Sanic hooks when the server shares memory between its processes."""
        self.hot: HotTier | None = None
        """The hot tier (L1), opened with Redis when ``settings.local_tier`` (see ``hot``)."""
        self.generations = Generations(self.tiers, settings.namespace, report=self._report)
        """The generation counters of tags: read with an entry, bumped by ``invalidate``."""
        self._decoded = DecodedRecords(settings.memory_max_bytes // 16)
        self.representations = Representations(settings.memory_max_bytes // 16)
        """Bodies decoded or re-encoded for clients that do not take the stored coding."""

    async def open(self) -> None:
        """Open the tiers (``Tiers.open``: Redis from the settings when no backend was given,
        and the hot tier with its invalidation channel when Redis has one)."""
        await self.tiers.open(clock=self.clock)
        self.hot = self.tiers.hot

    async def close(self) -> None:
        """Close what ``open`` created."""
        await self.tiers.close()

    async def ping(self) -> float:
        """Latency in ms of a real PING to the configured backend; raises CacheBackendError.

        Health checks call this outside the request path, so it does not consult the breaker.
        """
        backend = self.tiers.remote or self.tiers.memory
        start = time.perf_counter()
        latency = await backend.ping()
        self._report("PING", start)
        return latency

    # -- the fail-open boundary's bookkeeping --------------------------------------------

    def failed(self, exc: CacheBackendError, route: str, operation: str) -> None:
        """Record a backend failure that the caller is about to serve around (fail open)."""
        self.errors += 1
        if exc.transient:
            self.tiers.breaker.record_failure(exc.incident)
        log.warning("Cache %s failed for %s; continuing uncached", operation, route,
                    exc_info=exc)
        self.observer.on_error(route, operation)

    def count_bypass(self, route: str) -> None:
        """A cacheable route was requested in a way that must not touch the cache."""
        self.bypasses += 1
        self.observer.on_lookup(route, BYPASS)

    # -- lookups and stores -------------------------------------------------------------

    async def lookup(self, route: str, key: str, tags: Sequence[str], *,
                     refresh: bool = False, lead: bool = True, count: bool = True,
                     hot_ttl: float | None = None,
                     freshness: Freshness | None = None) -> Lookup:
        """Read ``key`` and the generations of ``tags``; a hit sets ``lookup.record``.

        On a miss with ``lead`` the caller becomes the single-flight leader for the key and
        must end with ``release``; a concurrent miss waits for it instead. ``count=False``
        keeps the lookup out of the statistics (application helpers). ``hot_ttl``: the
        entry's TTL, when the hot tier may serve and keep it (``CacheRule(local=True)``).
        ``freshness``: the rule's stale windows (``middleware.stale``); a current entry past
        its TTL is then ``STALE`` (served; with ``lead`` and no refresh running in this
        process, ``lookup.future`` is set and the caller must refresh and ``release``) or a
        miss with ``lookup.stale`` set. The hot tier is not asked here: a caller that may be
        served from it asks ``lookup_hot`` first (a hot hit does not need the tags).
        """
        hot = self.hot
        coherence = self.tiers.coherence
        tier = await self.tiers.select()
        state = None
        if not tier.shared:
            raw = (await tier.get_many((key,)))[0]
            found = Lookup(key, tier, coherence.generations(tags))
            record = None if raw is None else self._decode_local(key, raw)
        else:
            if hot is not None and hot_ttl is not None and hot.healthy:
                slots = coherence.slots(tags)
                counters = coherence.counters
                state = HotState(self.generations.keys(tags), slots,
                                 tuple([counters[slot] for slot in slots]), hot.seq, hot_ttl)
            found, raw = await self.generations.read(tier, key, tags, state)
            record = None if raw is None else self._decode(raw)
        generations = found.generations
        if not refresh:
            if record is not None and record.generations == generations:
                staleness = Staleness.FRESH if freshness is None else freshness.classify(
                    self.clock() - record.stored_at)
                if staleness is Staleness.FRESH:
                    self._keep_hot(found, record)
                    return self._hit(found, record, route, count)
                if staleness is Staleness.REVALIDATE:
                    return self._serve_stale(found, record, route, lead, count)
                if staleness is Staleness.IF_ERROR:
                    found.stale = record
            flight_key = f"{tier.name}|{key}"
            future = self.flights.joinable(flight_key, generations)
            if future is not None:
                record = await self.flights.wait(flight_key, future,
                                                 self.settings.stampede_timeout)
                if record is not None and record.generations == generations:
                    found.collapsed = True
                    return self._hit(found, record, route, count)
                lead = False
            if lead:
                found.future = self.flights.lead(flight_key, generations)
                if self.leases is not None and tier.shared:
                    shared = await self._lead_on_host(found, flight_key, tags, state)
                    if shared.record is not None:
                        return self._hit(shared, shared.record, route, count)
                    found = shared
        if count:
            self.misses += 1
            self.observer.on_lookup(route, MISS)
        return found

    def lookup_hot(self, route: str, key: str, *, count: bool = True) -> Lookup | None:
        """A hit of the hot tier, or None (then ``lookup``). Not a coroutine: no I/O, so the
        request hook answers it without creating or awaiting one.

        Asked before anything else: a hot hit costs no Redis command and no tier selection
        (the hot tier is flushed on every breaker transition). Only for keys whose rule may
        use the hot tier (``lookup``'s ``hot_ttl``), and not on a refresh.
        """
        hot = self.hot
        if hot is None:
            return None
        record = hot.get(key, self.tiers.coherence.counters)
        if record is None:
            return None
        return self._hit(Lookup(key, self.tiers.remote or self.tiers.memory,
                                record.generations), record, route, count)

    async def _lead_on_host(self, found: Lookup, flight_key: str, tags: Sequence[str],
                            state: HotState | None) -> Lookup:
        """A leading miss in this process: wait out another worker's lease on the key and read
        again (its entry is then a hit, ``record`` set), or take the lease (``middleware
        .leases``). The in-process flight ``found.future`` moves to the lookup returned."""
        leases = self.leases
        assert leases is not None
        timeout = self.settings.stampede_timeout
        held = leases.held_elsewhere(flight_key)
        if held is not None:
            try:
                await leases.wait(held, timeout)
                again, raw = await self.generations.read(found.tier, found.key, tags, state)
            except BaseException:
                self.release(found, None)
                raise
            again.future, found.future = found.future, None
            again.stale = found.stale
            record = None if raw is None else self._decode(raw)
            if record is not None and record.generations == again.generations:
                again.collapsed = True
                self._keep_hot(again, record)
                self.release(again, record)  # this process's waiters take it too
                again.record = record
                return again
            found = again
        found.lease = leases.claim(flight_key, timeout)
        return found

    def _keep_hot(self, found: Lookup, record: Record) -> None:
        state = found.hot
        if state is not None and self.hot is not None:
            self.hot.put(found.key, record, record.stored_at + state.ttl, state)

    def _hit(self, found: Lookup, record: Record, route: str, count: bool) -> Lookup:
        found.record = record
        found.outcome = HIT
        if count:
            self.hits += 1
            self.observer.on_lookup(route, HIT)
        return found

    def _serve_stale(self, found: Lookup, record: Record, route: str, lead: bool,
                     count: bool) -> Lookup:
        """A current entry within its ``stale-while-revalidate`` window: served as it is, and
        the first such lookup of this process (while none runs) leads the refresh."""
        found.record = record
        found.outcome = STALE
        flight_key = f"{found.tier.name}|{found.key}"
        if lead and self.flights.joinable(flight_key, found.generations) is None:
            found.future = self.flights.lead(flight_key, found.generations)
        if count:
            self.stale += 1
            self.observer.on_lookup(route, STALE)
        return found

    def make_record(self, found: Lookup, *, status: int, content_type: str,
                    headers: tuple[tuple[str, str], ...], body: bytes,
                    compress: bool = False) -> Record:
        """The record a miss will store (generations read before the handler ran).

        ``compress``: store the body brotli-encoded when it is at least
        ``settings.compress_min_bytes`` (see ``middleware.encoding``), with
        ``Vary: Accept-Encoding`` added to its headers."""
        coding, stored = (compress_body(body, self.settings.compress_min_bytes) if compress
                          else ("", body))
        if coding:
            headers = with_vary(headers)
        return Record(status=status, stored_at=self.clock(), generations=found.generations,
                      content_type=content_type, etag=etag_for(body), headers=headers,
                      body=stored, encoding=coding)

    async def store(self, found: Lookup, record: Record, ttl: float, route: str) -> bool:
        """Store ``record`` where it was looked up; False when the tier is unavailable now."""
        tier = found.tier
        if tier.shared and self.tiers.breaker.state != CLOSED:
            return False
        try:
            data = encode(record)
        except RecordError:
            # The handler's headers do not fit the layout: serve the response, store nothing.
            log.debug("Response for %s not stored: it does not fit a record", route,
                      exc_info=True)
            return False
        start = time.perf_counter()
        await tier.set(found.key, data, ttl)
        if tier.shared:
            self._report("SET", start)
            self.tiers.breaker.record_success()
            self._keep_hot(found, record)
        if route != HELPERS:
            self.stores += 1
            self.observer.on_store(route)
        return True

    def age(self, record: Record) -> int:
        """Whole seconds since ``record`` was stored (the ``Age`` header)."""
        return max(0, int(self.clock() - record.stored_at))

    def release(self, found: Lookup, record: Record | None) -> None:
        """End the single flight of a leading miss (``record`` is what waiters may serve)."""
        if found.future is not None:
            self.flights.release(f"{found.tier.name}|{found.key}", found.future, record)
            found.future = None
        if found.lease is not None and self.leases is not None:
            self.leases.release(found.lease)
            found.lease = None

    # -- invalidation -------------------------------------------------------------------

    async def invalidate(self, tags: Iterable[str], route: str = "") -> None:
        """Clear ``tags`` (and everything under them) after a successful write.

        ``Generations.bump``: the host's local generations first (every worker's memory
        tier), then the Redis counters. If Redis cannot be reached the tags are remembered as
        lost and replayed (or the epoch bumped) before this host serves from Redis again; the
        error is re-raised for the fail-open boundary to log.
        """
        tags = tuple(dict.fromkeys(tag for tag in tags if tag))
        if not tags:
            return
        self.invalidations += len(tags)
        for tag in tags:
            self.observer.on_invalidate(tag)
        await self.generations.bump(tags)

    # -- internals ----------------------------------------------------------------------

    def _decode_local(self, key: str, raw: bytes) -> Record | None:
        """``_decode`` for the in-process tier, which returns on every hit the very bytes
        object it stored: the record decoded the first time is reused."""
        record = self._decoded.get(key, raw)
        if record is None:
            record = self._decode(raw)
            if record is not None:
                self._decoded.put(key, raw, record)
        return record

    def _decode(self, raw: bytes) -> Record | None:
        try:
            return decode(raw)
        except RecordError:
            self.decode_errors += 1
            log.debug("Undecodable cache record treated as a miss", exc_info=True)
            return None

    def _report(self, command: str, start: float) -> None:
        if self._timed:
            self.observer.on_backend_command(command, time.perf_counter() - start)
