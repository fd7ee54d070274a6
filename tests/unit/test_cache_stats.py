"""The engine's counters and their report (``middleware.stats``)."""

from __future__ import annotations

from middleware import CacheSettings, MemoryBackend, ResponseCache


async def test_the_report_counts_lookups_and_derives_the_hit_rate() -> None:
    cache = ResponseCache(CacheSettings(), MemoryBackend())
    assert cache.stats()["hit_rate_percent"] == 0.0  # nothing looked up yet: no division
    found = await cache.lookup("/r", "k", ("t",))
    record = cache.make_record(found, status=200, content_type="text/plain", headers=(),
                               body=b"x")
    await cache.store(found, record, 60, "/r")
    cache.release(found, record)
    for _ in range(3):
        assert (await cache.lookup("/r", "k", ("t",))).record is not None
    await cache.invalidate(["t", "t", ""])  # repeated and empty tags count once / not at all
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["stores"]) == (3, 1, 1)
    assert stats["invalidations"] == 1 and stats["hit_rate_percent"] == 75.0
    assert stats["backend"] == "memory" and stats["memory_entries"] == 1 and stats["hot"] is None


def test_counters_kept_by_the_hooks_and_the_refresher_are_reported() -> None:
    cache = ResponseCache(CacheSettings(), MemoryBackend())
    cache.stale_on_error += 1
    cache.refreshes += 2
    cache.refresh_failures += 3
    cache.count_bypass("/r")
    stats = cache.stats()
    assert (stats["stale_on_error"], stats["refreshes"], stats["refresh_failures"],
            stats["bypasses"]) == (1, 2, 3, 1)
