"""Redis outages: fail open, breaker, memory fallback, lost invalidations, a killed server."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis, FakeServer
from pytest_redis import factories as redis_factories
from redis.asyncio import Redis

from middleware import CacheBackendError, RedisBackend, ResponseCache
from middleware.breaker import CLOSED, OPEN
from middleware.coherence import Coherence
from middleware.keys import response_key
from tests.integration.cache_testapp import build_app, settings_for_test
from tests.server import running

# Its own redis-server (saving on shutdown, so data survives a stop/start) for the kill test.
redis_to_kill = redis_factories.redis_proc(port=None, timeout=10, save="3600 1")


class CountingBackend:
    """A RedisBackend wrapper that counts calls and can be made to fail."""

    name = "redis"
    shared = True

    def __init__(self, inner: RedisBackend) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.fail: str | None = None  # None, "transient" or "answer"
        self.hold: asyncio.Event | None = None  # set: incr_many waits for it (a hanging INCR)

    def _check(self, op: str) -> None:
        self.calls[op] += 1
        if self.fail == "transient":
            raise CacheBackendError(f"{op}: connection refused", transient=True)
        if self.fail == "answer":
            raise CacheBackendError(f"{op}: OOM command not allowed", transient=False)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self._check("get_many")
        return await self.inner.get_many(keys)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._check("set")
        await self.inner.set(key, value, ttl)

    async def delete(self, keys: Sequence[str]) -> int:
        self._check("delete")
        return await self.inner.delete(keys)

    async def incr_many(self, keys: Sequence[str]) -> list[int]:
        self._check("incr_many")
        if self.hold is not None:
            await self.hold.wait()
        return await self.inner.incr_many(keys)

    async def init_many(self, keys: Sequence[str]) -> list[int]:
        self._check("init_many")
        return await self.inner.init_many(keys)

    async def ping(self) -> float:
        self._check("ping")
        return await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
async def counting(server: FakeServer) -> AsyncIterator[CountingBackend]:
    backend = CountingBackend(RedisBackend(FakeAsyncRedis(server=server)))
    yield backend
    await backend.close()


async def test_outage_is_never_a_500_and_memory_takes_over(
        server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    app, state, cache = build_app(RedisBackend(FakeAsyncRedis(server=server)),
                                  settings_for_test(breaker_failures=2))
    async with running(app) as client:
        await client.get("/items/1")
        server.connected = False
        responses = [await client.get("/items/1") for _ in range(5)]
        assert [r.status for r in responses] == [200] * 5
        assert all(r.json == {"id": 1, "name": "one"} for r in responses)
        # two failures trip the breaker (served uncached), then memory misses once and hits
        assert [r.headers["x-cache"] for r in responses] == [
            "ERROR", "ERROR", "MISS", "HIT", "HIT"]
        stats = cache.stats()
        assert stats["errors"] == 2 and stats["breaker"]["state"] == OPEN
        assert stats["backend"] == "memory" and stats["redis_available"] is False
        assert stats["configured_backend"] == "redis"
        write = await client.patch("/items/1", json={"name": "uno"})
        assert write.status == 200
        assert (await client.get("/items/1")).json["name"] == "uno"
    failures = [r for r in caplog.records if "continuing uncached" in r.getMessage()]
    assert len(failures) == 2 and all(r.exc_info for r in failures)


async def test_zero_redis_calls_while_the_breaker_is_open(counting: CountingBackend) -> None:
    app, state, cache = build_app(counting, settings_for_test(breaker_failures=2))
    async with running(app) as client:
        counting.fail = "transient"
        await client.get("/items/1")
        await client.get("/items/2")
        assert cache.tiers.breaker.state == OPEN
        before = counting.total
        for _ in range(10):
            assert (await client.get("/items/1")).status == 200
        assert (await client.post("/items", json={"name": "four"})).status == 201
        assert (await client.patch("/items/1", json={"name": "uno"})).status == 200
        assert (await client.get("/items/1")).json["name"] == "uno"
        assert counting.total == before


async def test_errors_redis_answers_do_not_trip_the_breaker(counting: CountingBackend) -> None:
    app, state, cache = build_app(counting, settings_for_test(breaker_failures=2))
    async with running(app) as client:
        counting.fail = "answer"
        for _ in range(5):
            response = await client.get("/items/1")
            assert response.status == 200 and response.headers["x-cache"] == "ERROR"
        assert cache.tiers.breaker.state == CLOSED and cache.stats()["errors"] == 5


async def test_lost_invalidation_is_replayed_before_redis_serves_again(
        server: FakeServer, counting: CountingBackend) -> None:
    app, state, cache = build_app(counting, settings_for_test(breaker_failures=1))
    async with running(app) as client:
        for path in ("/items/1", "/items/2", "/items"):
            await client.get(path)
        server.connected = False
        assert (await client.get("/items/1")).status == 200            # trips the breaker
        assert (await client.patch("/items/1", json={"name": "uno"})).status == 200
        assert cache.stats()["pending_invalidations"] == 1
        server.connected = True
        cache.tiers.breaker.reset_timeout = 0.0  # probe on the next request
        counting.calls.clear()
        fresh = await client.get("/items/1")
        assert fresh.json["name"] == "uno" and fresh.headers["x-cache"] == "MISS"
        assert counting.calls["ping"] == 1 and counting.calls["incr_many"] == 1
        assert cache.stats()["pending_invalidations"] == 0
        assert cache.tiers.breaker.state == CLOSED and cache.tiers.backend_name == "redis"
        assert (await client.get("/items")).json["items"][0] == "uno"
        # the replay was precise: an unrelated entry is still served from Redis
        assert (await client.get("/items/2")).headers["x-cache"] == "HIT"
        assert state.calls["item:2"] == 1


async def test_another_workers_lost_write_bumps_the_epoch(server: FakeServer) -> None:
    settings = settings_for_test()
    parts = Coherence.create_shared(64)
    app_a, state_a, cache_a = build_app(RedisBackend(FakeAsyncRedis(server=server)), settings)
    app_b, state_b, cache_b = build_app(RedisBackend(FakeAsyncRedis(server=server)), settings)
    state_b.items = state_a.items  # one "database"
    async with running(app_a) as worker_a, running(app_b) as worker_b:
        cache_a.tiers.coherence = Coherence.attach(parts)
        cache_b.tiers.coherence = Coherence.attach(parts)
        await worker_b.get("/items/3")
        for _ in range(settings.breaker_failures):   # worker A alone cannot reach Redis
            cache_a.tiers.breaker.record_failure()
        assert (await worker_a.patch("/items/3", json={"name": "tres"})).status == 200
        # worker B never saw a failure; it must not serve its pre-write entry
        after = await worker_b.get("/items/3")
        assert after.json["name"] == "tres" and after.headers["x-cache"] == "MISS"
        assert cache_b.tiers.coherence.outstanding == 0


async def test_memory_fallback_of_every_worker_sees_a_write(server: FakeServer) -> None:
    parts = Coherence.create_shared(64)
    app_a, state_a, cache_a = build_app(None, settings_for_test())
    app_b, state_b, cache_b = build_app(None, settings_for_test())
    state_b.items = state_a.items
    async with running(app_a) as worker_a, running(app_b) as worker_b:
        cache_a.tiers.coherence = Coherence.attach(parts)
        cache_b.tiers.coherence = Coherence.attach(parts)
        await worker_b.get("/items/1")
        assert (await worker_b.get("/items/1")).headers["x-cache"] == "HIT"
        assert (await worker_a.patch("/items/1", json={"name": "uno"})).status == 200
        assert (await worker_b.get("/items/1")).json["name"] == "uno"


@pytest.mark.redis
async def test_killed_redis_mid_run(redis_to_kill: Any) -> None:
    proc = redis_to_kill
    url = f"redis://{proc.host}:{proc.port}/0"
    settings = settings_for_test(redis_url=url, breaker_failures=2, connect_timeout=1.0,
                                 socket_timeout=1.0)
    app, state, cache = build_app(None, settings)  # Redis from the URL, as REDIS_URL gives it
    async with running(app) as client:
        assert cache.tiers.configured_backend == "redis" and cache.tiers.backend_name == "redis"
        for path in ("/items/1", "/items/2", "/items"):
            await client.get(path)
        assert (await client.get("/items/1")).headers["x-cache"] == "HIT"
        proc.stop()
        try:
            reads = [await client.get(p) for p in ("/items/1", "/items/2", "/items") * 3]
            assert [r.status for r in reads] == [200] * 9
            write = await client.patch("/items/1", json={"name": "uno"})
            assert write.status == 200
            during = await client.get("/items/1")
            assert during.status == 200 and during.json["name"] == "uno"
            assert cache.tiers.breaker.state == OPEN
        finally:
            proc.start()
        raw = Redis(host=proc.host, port=proc.port)
        try:
            old_key = response_key(settings.namespace, "/items/1")
            assert await raw.get(old_key) is not None, "the pre-write entry survived the restart"
        finally:
            await raw.aclose()
        cache.tiers.breaker.reset_timeout = 0.0
        results = await asyncio.gather(*(client.get("/items/1") for _ in range(5)))
        assert all(r.status == 200 and r.json["name"] == "uno" for r in results)
        assert (await client.get("/items")).json["items"][0] == "uno"
        assert cache.tiers.breaker.state == CLOSED and cache.tiers.backend_name == "redis"
        # A restarted Redis is a new incarnation: everything stored before (it could be an
        # older snapshot) is invalid until stored again, then it hits.
        assert (await client.get("/items/2")).headers["x-cache"] == "MISS"
        assert (await client.get("/items/2")).headers["x-cache"] == "HIT"


async def test_a_corrupted_generation_counter_fails_open(server: FakeServer) -> None:
    app, state, cache = build_app(RedisBackend(FakeAsyncRedis(server=server)),
                                  settings_for_test())
    async with running(app) as client:
        await client.get("/items/1")
        raw = FakeAsyncRedis(server=server)
        await raw.set(f"{cache.settings.namespace}:gen:item:1", b"not a number")
        response = await client.get("/items/1")
        assert response.status == 200 and response.headers["x-cache"] == "ERROR"
        assert cache.tiers.breaker.state == CLOSED and cache.stats()["errors"] == 1
        await raw.aclose()


async def test_a_write_cancelled_during_its_invalidation_is_replayed(
        counting: CountingBackend) -> None:
    """The client hangs up while the INCRs are in flight (the write has committed): the
    next read from Redis must not be the pre-write entry."""
    cache = ResponseCache(settings_for_test(), counting)
    found = await cache.lookup("/r", "k", ("item",))
    record = cache.make_record(found, status=200, content_type="text/plain", headers=(),
                               body=b"before the write")
    await cache.store(found, record, 30, "/r")
    cache.release(found, record)
    assert (await cache.lookup("/r", "k", ("item",))).record == record
    counting.hold = asyncio.Event()
    write = asyncio.create_task(cache.invalidate(("item",)))
    while counting.calls["incr_many"] == 0:
        await asyncio.sleep(0)
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write
    counting.hold = None
    assert cache.tiers.coherence.outstanding == 1
    after = await cache.lookup("/r", "k", ("item",), lead=False)
    assert after.record is None and cache.tiers.coherence.outstanding == 0
