"""The tiers of the cache and which one serves now. Read this first.

Three tiers, one request at a time, in this order:

1. **Hot tier** (``middleware.hot.HotTier``, one per worker, with Redis and ``CACHE_LOCAL``):
   decoded records in the worker's memory, served with zero Redis commands while the worker
   *knows* their generations are current. It learns generations from the Redis tier's
   ``MGET`` replies and forgets them when a write names them: the bump script publishes the
   bumped counters on ``<ns>:inv`` (``backends.incarnation``), which each worker's subscriber
   connection (``backends.subscriber``) applies as it arrives. Not trusted (skipped, and
   flushed afterwards) while that channel is not known to be healthy.
2. **Redis** (``backends.redis.RedisBackend`` over ``backends.pipelined``, or
   ``backends.cluster.ClusterBackend`` with ``REDIS_CLUSTER``): entries and
   generation counters shared by every worker and instance; one ``MGET`` per lookup. Guarded by
   the circuit breaker (``breaker``); counters survive Redis forgetting them
   (``backends.incarnation``). Or, with no Redis URL but an Upstash REST URL and token, the
   same commands over HTTP (``backends.upstash``): one request per lookup, and no hot tier,
   since REST cannot subscribe to the invalidation channel.
3. **In-process fallback** (``backends.memory.MemoryBackend``, one per worker): serves only while
   the breaker is open, validated by the host's local generations (``coherence``), which every
   write on this host bumps before its response leaves, whether Redis answers or not.

``Tiers.select()`` (below) is called before every backend operation and answers Redis or the
fallback: while the breaker is open it answers the fallback without touching Redis. The
breaker's single HALF_OPEN probe PINGs Redis and replays the invalidations this host lost
(``coherence``) before anything is read from Redis again; a process that finds another
worker's lost write outstanding does the same (an epoch bump) before its next Redis read.
The request hook asks the hot tier first (``cache.ResponseCache.lookup_hot``), then the
engine. Errors propagate to the caller's fail-open boundary (``sanic``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from middleware.backends.base import CacheBackend, CacheBackendError
from middleware.backends.cluster import ClusterBackend
from middleware.backends.memory import MemoryBackend
from middleware.backends.redis import RedisBackend
from middleware.backends.subscriber import Subscriber
from middleware.backends.upstash import UpstashBackend
from middleware.breaker import CLOSED, CircuitBreaker
from middleware.coherence import Coherence
from middleware.hot import HotTier
from middleware.keys import EPOCH_TAG, generation_key
from middleware.observer import CacheObserver
from middleware.settings import CacheSettings, redact_url

__all__ = ["Tiers"]

log = logging.getLogger(__name__)

Report = Callable[[str, float], None]


class Tiers:
    """The configured backends, the breaker in front of Redis and the host's coherence state.

    ``backend``: a shared backend (``RedisBackend``) is used with a ``MemoryBackend`` fallback;
    a ``MemoryBackend`` is used alone; ``None`` builds Redis from ``settings.redis_url`` in
    ``open()`` (memory alone when it is unset).
    """

    def __init__(self, settings: CacheSettings, backend: CacheBackend | None, *,
                 observer: CacheObserver, report: Report,
                 coherence: Coherence | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._observer = observer
        self._report = report
        self._memory_only = backend is not None and not backend.shared
        self._owns_remote = False
        self.memory: CacheBackend
        self.remote: CacheBackend | None
        if backend is not None and not backend.shared:
            self.memory, self.remote = backend, None
        else:
            self.memory = MemoryBackend(settings.memory_max_entries, settings.memory_max_bytes,
                                        clock=monotonic)
            self.remote = backend
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset_seconds,
                                      clock=monotonic, on_transition=self._on_transition)
        self.coherence = coherence or Coherence.local(max_pending=settings.max_pending_tags)
        self.hot: HotTier | None = None
        """The hot tier, flushed on every breaker transition (what it knew may be old)."""
        self.channel: Any = None
        """The hot tier's invalidation channel (``Subscriber``, or the backend's own)."""

    async def open(self, *, clock: Callable[[], float] = time.time) -> None:
        """Create the Redis backend from the settings when none was given, then the hot tier
        (its entries' TTLs on ``clock``) with its invalidation channel when Redis has one."""
        self._open_remote()
        remote = self.remote
        channel = getattr(remote, "channel", None)
        url = getattr(remote, "url", None)
        if self.settings.local_tier and channel and url:
            settings = self.settings
            self.hot = hot = HotTier(settings.memory_max_entries, settings.memory_max_bytes,
                                     clock=clock)
            # A backend may bring its own channel (a cluster: one connection per master).
            channel_class = getattr(remote, "subscriber", Subscriber)
            self.channel = channel_class(
                url, channel, on_message=hot.on_message, on_health=hot.on_health,
                connect_timeout=settings.connect_timeout, timeout=settings.socket_timeout,
                ssl_context=getattr(remote, "ssl_context", None))
            self.channel.start()

    def _open_remote(self) -> None:
        if self.remote is None and self.settings.redis_url and not self._memory_only:
            cluster = self.settings.redis_cluster
            factory = ClusterBackend if cluster else RedisBackend
            self.remote = factory.from_url(self.settings.redis_url, self.settings)
            self._owns_remote = True
            log.info("Response cache: Redis%s at %s (memory fallback)",
                     " Cluster" if cluster else "", self.redis_url_redacted)
        elif self.remote is None and self.settings.rest_url and not self._memory_only:
            self.remote = UpstashBackend.from_settings(self.settings)
            self._owns_remote = True
            log.info("Response cache: Upstash REST at %s (memory fallback; no hot tier: REST "
                     "cannot subscribe to the invalidation channel)", self.redis_url_redacted)
        elif self.remote is None:
            log.info("Response cache: in-process memory backend")

    async def close(self) -> None:
        """Close what ``open`` created."""
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
        if self.remote is not None and self._owns_remote:
            try:
                await self.remote.close()
            except CacheBackendError:
                log.warning("Closing the Redis connection failed", exc_info=True)
            self.remote = None
            self._owns_remote = False

    @property
    def redis_available(self) -> bool:
        """Redis is configured and the breaker is closed."""
        return self.remote is not None and self.breaker.state == CLOSED

    @property
    def backend_name(self) -> str:
        """What serves right now: ``"redis"`` (breaker closed) or ``"memory"``."""
        if self.remote is not None and self.breaker.state == CLOSED:
            return self.remote.name
        return self.memory.name

    @property
    def configured_backend(self) -> str:
        """What was configured: ``"redis"`` (with memory fallback) or ``"memory"``."""
        if self.remote is not None:
            return self.remote.name
        if self._memory_only:
            return "memory"
        if self.settings.redis_url:
            return "redis"
        return "upstash" if self.settings.rest_url else "memory"

    @property
    def redis_url_redacted(self) -> str | None:
        """The configured Redis URL with any password replaced by ``***``."""
        url = getattr(self.remote, "url_redacted", None)
        return url if url is not None else redact_url(self.settings.redis_url)

    async def select(self) -> CacheBackend:
        """The backend to use now (see the module docstring)."""
        remote = self.remote
        if remote is None:
            return self.memory
        breaker = self.breaker
        if not breaker.allow():
            return self.memory
        if breaker.probing:
            start = time.perf_counter()
            await remote.ping()
            self._report("PING", start)
            await self._reconcile(remote)
            breaker.record_success()
        elif self.coherence.needs_reconcile:
            await self._reconcile(remote)
        return remote

    async def _reconcile(self, remote: CacheBackend) -> None:
        plan = self.coherence.plan()
        if plan is None:
            return
        tags, up_to = plan
        start = time.perf_counter()
        await remote.incr_many([generation_key(self.settings.namespace, t) for t in tags])
        self._report("INCR", start)
        self.coherence.reconciled(up_to)
        if tags == (EPOCH_TAG,):
            log.warning("Invalidations were lost while Redis was unreachable: bumped the "
                        "global epoch (every Redis entry is now stale)")
        else:
            log.warning("Replayed %d lost invalidation tag(s) to Redis", len(tags))

    def _on_transition(self, old: str, new: str) -> None:
        if new == CLOSED and isinstance(self.memory, MemoryBackend):
            # Entries the fallback stored during the outage missed other hosts' writes.
            self.memory.clear()
        if self.hot is not None:
            self.hot.flush()
        self._observer.on_breaker_transition(old, new)
