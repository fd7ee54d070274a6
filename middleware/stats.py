"""The cache's statistics: what one worker process counted, and the report of them.

``CacheStats`` is a base of the engine (``cache.ResponseCache``), not an object the engine
holds: the hit path counts ``hits += 1`` on the engine itself, with no attribute in between.
Besides the engine, the Sanic hooks count ``stale_on_error`` and the background refresher
(``refresh``) ``refreshes`` and ``refresh_failures``. The counters are this process's; the
Prometheus observer aggregates across workers.
"""

from __future__ import annotations

from typing import Any

from middleware.backends.memory import MemoryBackend
from middleware.hot import HotTier
from middleware.leases import HostLeases
from middleware.stampede import SingleFlight
from middleware.tiers import Tiers

__all__ = ["CacheStats"]


class CacheStats:
    """The counters of the cache's outcomes, and ``stats()`` over them and the engine's state."""

    __slots__ = ("hits", "misses", "bypasses", "stores", "invalidations", "errors",
                 "decode_errors", "stale", "stale_on_error", "refreshes", "refresh_failures")

    # The engine's parts the report reads besides the counters (set by ``ResponseCache``).
    tiers: Tiers
    flights: SingleFlight
    leases: HostLeases | None
    hot: HotTier | None

    def __init__(self) -> None:
        self.hits = self.misses = self.bypasses = self.stores = 0
        self.invalidations = self.errors = self.decode_errors = 0
        self.stale = self.stale_on_error = self.refreshes = self.refresh_failures = 0

    def stats(self) -> dict[str, Any]:
        """Counters and state for the health and metrics endpoints (this worker process's;
        the Prometheus observer aggregates across workers)."""
        looked_up = self.hits + self.misses
        memory = self.tiers.memory
        return {
            "hits": self.hits, "misses": self.misses, "bypasses": self.bypasses,
            "stores": self.stores, "invalidations": self.invalidations, "errors": self.errors,
            "hit_rate_percent": round(100.0 * self.hits / looked_up, 2) if looked_up else 0.0,
            "redis_available": self.tiers.redis_available,
            "backend": self.tiers.backend_name,
            "configured_backend": self.tiers.configured_backend,
            "breaker": self.tiers.breaker.snapshot(),
            "memory_entries": len(memory) if isinstance(memory, MemoryBackend) else None,
            "memory_bytes": memory.size_bytes if isinstance(memory, MemoryBackend) else None,
            "pending_invalidations": self.tiers.coherence.outstanding,
            "coalesced": self.flights.coalesced,
            "coalesced_across_workers": 0 if self.leases is None else self.leases.waited,
            "decode_errors": self.decode_errors,
            "stale": self.stale, "stale_on_error": self.stale_on_error,
            "refreshes": self.refreshes, "refresh_failures": self.refresh_failures,
            "hot": None if self.hot is None else {
                "healthy": self.hot.healthy, "hits": self.hot.hits,
                "entries": len(self.hot), "bytes": self.hot.size_bytes},
        }
