"""ResponseCache: lookups, stores and invalidations over the selected backend, and statistics.

Entries are validated by generation numbers, never deleted by pattern: each tag has a counter
(``<ns>:gen:<tag>`` in Redis, a slot of ``coherence`` for the in-memory tier) plus one global
epoch. A lookup reads the entry and the current generations of its tags in ONE round trip
(``MGET``); a hit needs the generations stored in the record to equal the current ones. A miss
keeps the generations it read *before* the handler ran and stores the record under them, so a
write that lands while a slow handler runs leaves that record already invalid. A write bumps
its tags (one pipelined round trip). Redis commands: hit 1, miss 2 (MGET + SET), write 1.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from middleware.backends.base import CacheBackend, CacheBackendError
from middleware.backends.memory import MemoryBackend
from middleware.breaker import CLOSED, CircuitBreaker
from middleware.coherence import Coherence
from middleware.keys import EPOCH_TAG, generation_key
from middleware.observer import CacheObserver, NullObserver
from middleware.policy import etag_for
from middleware.record import DecodedRecords, Record, RecordError, decode, encode
from middleware.settings import CacheSettings
from middleware.stampede import SingleFlight
from middleware.tiers import Tiers

__all__ = ["HIT", "MISS", "Lookup", "ResponseCache"]

log = logging.getLogger(__name__)

HIT = "hit"
MISS = "miss"
BYPASS = "bypass"
HELPERS = "helpers"


def _gen(value: bytes | None) -> int:
    if not value:
        return 0
    try:
        return int(value)
    except ValueError:
        # Someone overwrote a counter: fail open (uncached) rather than guess.
        raise CacheBackendError(f"generation counter holds {value[:20]!r}",
                                transient=False) from None


class Lookup:
    """The outcome of one lookup, kept on the request until the response hook."""

    __slots__ = ("future", "generations", "key", "outcome", "record", "tier")

    def __init__(self, key: str, tier: CacheBackend, generations: tuple[int, ...]) -> None:
        self.key = key
        self.tier = tier
        self.generations = generations
        self.record: Record | None = None
        self.outcome = MISS
        self.future: Any = None


class ResponseCache:
    """The cache engine behind the Sanic hooks and the application helpers.

    ``backend``: a shared backend (``RedisBackend``) is used with a ``MemoryBackend`` fallback
    behind the circuit breaker; a ``MemoryBackend`` is used alone. ``None`` builds Redis from
    ``settings.redis_url`` in ``open()`` (or memory alone when it is unset).
    """

    def __init__(self, settings: CacheSettings | None = None,
                 backend: CacheBackend | None = None, *,
                 observer: CacheObserver | None = None,
                 coherence: Coherence | None = None,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings = settings or CacheSettings()
        self.observer: CacheObserver = observer or NullObserver()
        self._timed = observer is not None and not isinstance(observer, NullObserver)
        self._clock = clock
        self.tiers = Tiers(settings, backend, observer=self.observer, report=self._report,
                           coherence=coherence, monotonic=monotonic)
        self.flights = SingleFlight()
        self._gen_keys: dict[tuple[str, ...], list[str]] = {}
        self._decoded = DecodedRecords(settings.memory_max_bytes // 16)
        self.hits = self.misses = self.bypasses = self.stores = 0
        self.invalidations = self.errors = self.decode_errors = 0

    # -- the parts (tests and health checks reach them through the cache) ---------------

    @property
    def memory(self) -> CacheBackend:
        """The in-process backend (alone, or Redis's fallback)."""
        return self.tiers.memory

    @property
    def remote(self) -> CacheBackend | None:
        """The shared backend (Redis), if configured and open."""
        return self.tiers.remote

    @property
    def breaker(self) -> CircuitBreaker:
        """The circuit breaker in front of Redis."""
        return self.tiers.breaker

    @property
    def coherence(self) -> Coherence:
        """The host-wide invalidation state (shared by workers once attached)."""
        return self.tiers.coherence

    @coherence.setter
    def coherence(self, value: Coherence) -> None:
        self.tiers.coherence = value

    async def open(self) -> None:
        """Create the Redis backend from the settings when none was given."""
        await self.tiers.open()

    async def close(self) -> None:
        """Close what ``open`` created."""
        await self.tiers.close()

    @property
    def backend_name(self) -> str:
        """What serves right now: ``"redis"`` (breaker closed) or ``"memory"``."""
        return self.tiers.backend_name

    @property
    def configured_backend(self) -> str:
        """What was configured: ``"redis"`` (with memory fallback) or ``"memory"``."""
        return self.tiers.configured_backend

    @property
    def redis_url_redacted(self) -> str | None:
        """The configured Redis URL with any password replaced by ``***``."""
        return self.tiers.redis_url_redacted

    def stats(self) -> dict[str, Any]:
        """Counters and state for the health and metrics endpoints (this worker process's;
        the Prometheus observer aggregates across workers)."""
        looked_up = self.hits + self.misses
        memory = self.memory
        return {
            "hits": self.hits, "misses": self.misses, "bypasses": self.bypasses,
            "stores": self.stores, "invalidations": self.invalidations, "errors": self.errors,
            "hit_rate_percent": round(100.0 * self.hits / looked_up, 2) if looked_up else 0.0,
            "redis_available": self.tiers.redis_available,
            "backend": self.backend_name,
            "configured_backend": self.configured_backend,
            "breaker": self.breaker.snapshot(),
            "memory_entries": len(memory) if isinstance(memory, MemoryBackend) else None,
            "memory_bytes": memory.size_bytes if isinstance(memory, MemoryBackend) else None,
            "pending_invalidations": self.coherence.outstanding,
            "coalesced": self.flights.coalesced,
            "decode_errors": self.decode_errors,
        }

    async def ping(self) -> float:
        """Latency in ms of a real PING to the configured backend; raises CacheBackendError.

        Health checks call this outside the request path, so it does not consult the breaker.
        """
        backend = self.remote or self.memory
        start = time.perf_counter()
        latency = await backend.ping()
        self._report("PING", start)
        return latency

    # -- the fail-open boundary's bookkeeping --------------------------------------------

    def failed(self, exc: CacheBackendError, route: str, operation: str) -> None:
        """Record a backend failure that the caller is about to serve around (fail open)."""
        self.errors += 1
        if exc.transient:
            self.breaker.record_failure(exc.incident)
        log.warning("Cache %s failed for %s; continuing uncached", operation, route,
                    exc_info=exc)
        self.observer.on_error(route, operation)

    def count_bypass(self, route: str) -> None:
        """A cacheable route was requested in a way that must not touch the cache."""
        self.bypasses += 1
        self.observer.on_lookup(route, BYPASS)

    # -- lookups and stores -------------------------------------------------------------

    async def lookup(self, route: str, key: str, tags: Sequence[str], *,
                     refresh: bool = False, lead: bool = True, count: bool = True) -> Lookup:
        """Read ``key`` and the generations of ``tags``; a hit sets ``lookup.record``.

        On a miss with ``lead`` the caller becomes the single-flight leader for the key and
        must end with ``release``; a concurrent miss waits for it instead. ``count=False``
        keeps the lookup out of the statistics (application helpers).
        """
        tier = await self.tiers.select()
        if tier.shared:
            keys = self._generation_keys(tags)
            keys[0] = key
            start = time.perf_counter()
            values = await tier.get_many(keys)
            self._report("MGET", start)
            self.breaker.record_success()
            raw = values[0]
            generations = tuple(_gen(value) for value in values[1:])
        else:
            raw = (await tier.get_many((key,)))[0]
            generations = self.coherence.generations(tags)
        found = Lookup(key, tier, generations)
        if not refresh:
            if raw is not None:
                record = self._decode(raw) if tier.shared else self._decode_local(key, raw)
                if record is not None and record.generations == generations:
                    return self._hit(found, record, route, count)
            flight_key = f"{tier.name}|{key}"
            future = self.flights.joinable(flight_key, generations)
            if future is not None:
                record = await self.flights.wait(flight_key, future,
                                                 self.settings.stampede_timeout)
                if record is not None and record.generations == generations:
                    return self._hit(found, record, route, count)
                lead = False
            if lead:
                found.future = self.flights.lead(flight_key, generations)
        if count:
            self.misses += 1
            self.observer.on_lookup(route, MISS)
        return found

    def _hit(self, found: Lookup, record: Record, route: str, count: bool) -> Lookup:
        found.record = record
        found.outcome = HIT
        if count:
            self.hits += 1
            self.observer.on_lookup(route, HIT)
        return found

    def make_record(self, found: Lookup, *, status: int, content_type: str,
                    headers: tuple[tuple[str, str], ...], body: bytes) -> Record:
        """The record a miss will store (generations read before the handler ran)."""
        return Record(status=status, stored_at=self._clock(), generations=found.generations,
                      content_type=content_type, etag=etag_for(body), headers=headers,
                      body=body)

    async def store(self, found: Lookup, record: Record, ttl: float, route: str) -> bool:
        """Store ``record`` where it was looked up; False when the tier is unavailable now."""
        tier = found.tier
        if tier.shared and self.breaker.state != CLOSED:
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
            self.breaker.record_success()
        if route != HELPERS:
            self.stores += 1
            self.observer.on_store(route)
        return True

    def age(self, record: Record) -> int:
        """Whole seconds since ``record`` was stored (the ``Age`` header)."""
        return max(0, int(self._clock() - record.stored_at))

    def release(self, found: Lookup, record: Record | None) -> None:
        """End the single flight of a leading miss (``record`` is what waiters may serve)."""
        if found.future is not None:
            self.flights.release(f"{found.tier.name}|{found.key}", found.future, record)
            found.future = None

    # -- invalidation -------------------------------------------------------------------

    async def invalidate(self, tags: Iterable[str], route: str = "") -> None:
        """Clear ``tags`` (and everything under them) after a successful write.

        The host's local generations are bumped first (every worker's memory tier); then the
        Redis counters. If Redis cannot be reached the tags are remembered as lost and replayed
        (or the epoch bumped) before this host serves from Redis again; the error is re-raised
        for the fail-open boundary to log.
        """
        tags = tuple(dict.fromkeys(tag for tag in tags if tag))
        if not tags:
            return
        self.coherence.bump(tags)
        self.invalidations += len(tags)
        for tag in tags:
            self.observer.on_invalidate(tag)
        if self.remote is None:
            return
        try:
            tier = await self.tiers.select()
            start = time.perf_counter()
            if tier.shared:
                await tier.incr_many([generation_key(self.settings.namespace, t) for t in tags])
        except BaseException:
            # A backend error, or the request cancelled (client gone) mid-INCR after its
            # write committed: either way the INCRs may not have landed, so replay them.
            self.coherence.record_lost(tags)
            raise
        if not tier.shared:
            self.coherence.record_lost(tags)
            log.info("Redis unavailable: invalidation of %s kept for replay", ", ".join(tags))
            return
        self._report("INCR", start)
        self.breaker.record_success()

    # -- internals ----------------------------------------------------------------------

    def _generation_keys(self, tags: Sequence[str]) -> list[str]:
        """``[placeholder, gen keys of tags..., epoch key]`` (a fresh list, memoised parts)."""
        key = tuple(tags)
        cached = self._gen_keys.get(key)
        if cached is None:
            ns = self.settings.namespace
            cached = ["", *(generation_key(ns, t) for t in key), generation_key(ns, EPOCH_TAG)]
            if len(self._gen_keys) >= 4096:
                self._gen_keys.clear()
            self._gen_keys[key] = cached
        return list(cached)

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
