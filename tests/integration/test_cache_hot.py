"""The hot tier (L1) over HTTP with real redis-servers: zero Redis commands per hit, coherent
across instances through the invalidation channel, and not trusted while the channel is not
known to be healthy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis
from pytest_redis.executor import RedisExecutor

from middleware import CacheRule, InvalidationRule, RedisBackend
from middleware.backends.subscriber import Subscriber
from tests.integration.cache_testapp import RULES, AppState, build_app, settings_for_test
from tests.integration.fault_proxy import FaultProxy
from tests.server import running

pytestmark = pytest.mark.redis


def _url(proc: RedisExecutor) -> str:
    return f"redis://{proc.host}:{proc.port}/0"


class Commands:
    """Counts the commands a real redis-server executed (INFO commandstats)."""

    def __init__(self, proc: RedisExecutor) -> None:
        self.client = redis.Redis(host=proc.host, port=proc.port)

    def snapshot(self) -> dict[str, int]:
        return {name.removeprefix("cmdstat_"): int(value["calls"])
                for name, value in self.client.info("commandstats").items()}

    def since(self, before: dict[str, int]) -> dict[str, int]:
        after = self.snapshot()
        return {name: n - before.get(name, 0) for name, n in after.items()
                if n != before.get(name, 0) and name not in {"info", "ping"}}


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def library_app(proc: RedisExecutor, **overrides: Any) -> AsyncIterator[tuple[Any, ...]]:
    settings = settings_for_test(**overrides)
    app, state, cache = build_app(RedisBackend.from_url(_url(proc), settings), settings)
    async with running(app) as client:
        if settings.local_tier:
            await settle(cache)
        yield client, state, cache


async def settle(cache: Any) -> None:
    """Subscribed, connected, and the fresh namespace's first restart check (an epoch reset,
    published as ``*``: the hot tier starts over) applied."""
    await until(lambda: cache.hot is not None and cache.hot.healthy)
    await cache.ping()
    resets = cache.tiers.remote.incarnation.resets
    await until(lambda: cache.tiers.channel.messages >= resets)  # noqa: SLF001


async def test_a_hot_hit_costs_zero_redis_commands(redis_server: RedisExecutor) -> None:
    commands = Commands(redis_server)
    async with library_app(redis_server) as (client, state, cache):
        assert (await client.get("/items/1")).headers["x-cache"] == "MISS"
        before = commands.snapshot()
        for _ in range(20):
            response = await client.get("/items/1")
            assert response.headers["x-cache"] == "HIT" and response.json["name"] == "one"
        assert commands.since(before) == {}
        assert state.calls["item:1"] == 1 and cache.hot.hits == 20
        assert cache.stats()["hot"]["entries"] == 1

        # A write here: the next read is fresh, then hot again.
        assert (await client.patch("/items/1", json={"name": "uno"})).status == 200
        assert (await client.get("/items/1")).json["name"] == "uno"
        before = commands.snapshot()
        assert (await client.get("/items/1")).json["name"] == "uno"
        assert commands.since(before) == {}


async def test_a_rule_can_keep_the_strict_one_round_trip_path(
        redis_server: RedisExecutor) -> None:
    commands = Commands(redis_server)
    async with library_app(redis_server) as (client, state, cache):
        await client.get("/strict/1")
        before = commands.snapshot()
        for _ in range(5):
            assert (await client.get("/strict/1")).headers["x-cache"] == "HIT"
        assert commands.since(before) == {"mget": 5}
        assert cache.hot.hits == 0


async def test_the_whole_tier_can_be_turned_off(redis_server: RedisExecutor) -> None:
    commands = Commands(redis_server)
    async with library_app(redis_server, local_tier=False) as (client, state, cache):
        assert cache.hot is None
        await client.get("/items/1")
        before = commands.snapshot()
        assert (await client.get("/items/1")).headers["x-cache"] == "HIT"
        assert commands.since(before) == {"mget": 1}


async def test_before_the_first_subscribe_confirmation_hits_go_through_redis(
        redis_server: RedisExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    started = asyncio.Event()
    real_start = Subscriber.start
    monkeypatch.setattr(Subscriber, "start", lambda self: None)  # not subscribed yet
    commands = Commands(redis_server)
    settings = settings_for_test()
    app, state, cache = build_app(RedisBackend.from_url(_url(redis_server), settings), settings)
    async with running(app) as client:
        await client.get("/items/1")
        before = commands.snapshot()
        for _ in range(3):
            assert (await client.get("/items/1")).headers["x-cache"] == "HIT"
        assert commands.since(before) == {"mget": 3}
        assert not cache.hot.healthy and len(cache.hot) == 0
        real_start(cache.tiers.channel)  # noqa: SLF001
        started.set()
        await until(lambda: cache.hot.healthy)
        await client.get("/items/1")  # learns the generations, keeps the record
        before = commands.snapshot()
        assert (await client.get("/items/1")).headers["x-cache"] == "HIT"
        assert commands.since(before) == {}


async def test_a_killed_subscriber_connection_turns_the_tier_off_and_flushes_it(
        redis_server: RedisExecutor) -> None:
    commands = Commands(redis_server)
    admin = commands.client
    async with library_app(redis_server) as (client, state, cache):
        for item in (1, 2):
            await client.get(f"/items/{item}")
            await client.get(f"/items/{item}")
        assert len(cache.hot) == 2
        connects = cache.tiers.channel.connects  # noqa: SLF001
        assert admin.client_kill_filter(_type="pubsub") >= 1
        subscriber = cache.tiers.channel  # noqa: SLF001
        await until(lambda: not cache.hot.healthy or subscriber.connects > connects)
        # Whatever the timing, what the tier knew before is gone...
        assert cache.hot.hits == 0 or len(cache.hot) <= 2
        await until(lambda: cache.hot.healthy)
        assert len(cache.hot) == 0  # ...flushed when the channel came back
        before = commands.snapshot()
        assert (await client.get("/items/1")).headers["x-cache"] == "HIT"  # from Redis
        assert commands.since(before) == {"mget": 1}
        before = commands.snapshot()
        assert (await client.get("/items/1")).headers["x-cache"] == "HIT"  # hot again
        assert commands.since(before) == {}


async def test_a_lagging_channel_is_not_trusted(redis_server: RedisExecutor) -> None:
    """A heartbeat PING is answered after every message queued before it: when replies stop
    coming (a backlog, a stalled link), the channel is unhealthy within its timeout."""
    proxy = FaultProxy(redis_server.host, redis_server.port)
    await proxy.start()
    health: list[bool] = []
    subscriber = Subscriber(proxy.url, "lagtest:inv", on_message=lambda _: None,
                            on_health=health.append, connect_timeout=1.0, timeout=0.6,
                            heartbeat=0.2)
    try:
        subscriber.start()
        await until(lambda: subscriber.healthy)
        proxy.stall_replies()
        started = time.monotonic()
        await until(lambda: not subscriber.healthy, timeout=5)
        assert time.monotonic() - started < 0.6 + 2 * 0.2 + 0.5
        proxy.pass_through()
        await until(lambda: subscriber.healthy, timeout=10)
        assert health[:3] == [True, False, True]
    finally:
        await subscriber.close()
        await proxy.stop()


# -- two instances of one app on one Redis --------------------------------------------------

@asynccontextmanager
async def two_instances(proc: RedisExecutor) -> AsyncIterator[tuple[Any, ...]]:
    """Two apps with their own caches (hot tiers, channels, host state) sharing one Redis
    and one "database": two instances of a service, as far as the cache can tell."""
    settings = settings_for_test()
    state = AppState()
    first = build_app(RedisBackend.from_url(_url(proc), settings), settings, state=state)
    second = build_app(RedisBackend.from_url(_url(proc), settings), settings, state=state)
    async with running(first[0]) as a, running(second[0]) as b:
        await settle(first[2])
        await settle(second[2])
        yield a, b, first[2], second[2], state


async def test_a_write_on_one_instance_is_never_read_stale_on_the_other(
        redis_server: RedisExecutor) -> None:
    async with two_instances(redis_server) as (a, b, writer_cache, reader_cache, state):
        stale = []
        for version in range(1, 41):
            for _ in range(2):  # hot on the reader
                await b.get("/items/1")
                await b.get("/items?limit=10")
            acknowledged = await a.patch("/items/1", json={"name": f"v{version}"})
            assert acknowledged.status == 200
            await asyncio.sleep(0.005)  # a request starting 5 ms after the acknowledgement
            item = (await b.get("/items/1")).json["name"]
            listed = (await b.get("/items?limit=10")).json["items"][0]
            if (item, listed) != (f"v{version}", f"v{version}"):
                stale.append((version, item, listed))
        assert stale == []
        assert reader_cache.hot.hits >= 100  # the reader really served from its hot tier


async def test_coherence_under_concurrent_load_across_instances(
        redis_server: RedisExecutor) -> None:
    """Readers hammer one instance while writes land on the other: no read that starts after
    a write was acknowledged returns older data (on one host the message is applied before
    any later request is looked up, so no delay is allowed at all)."""
    async with two_instances(redis_server) as (a, b, writer_cache, reader_cache, state):
        ids = [1, 2, 3]
        for item in ids:
            state.items[item] = "0"
        acknowledged = {item: 0 for item in ids}
        stale: list[Any] = []
        done = asyncio.Event()

        async def writer() -> None:
            for version in range(1, 31):
                for item in ids:
                    response = await a.patch(f"/items/{item}", json={"name": str(version)})
                    assert response.status == 200
                    acknowledged[item] = version
                    await asyncio.sleep(0.002)
            done.set()

        async def reader(item: int) -> None:
            while not done.is_set():
                expected = acknowledged[item]
                response = await b.get(f"/items/{item}")
                if int(response.json["name"]) < expected:
                    stale.append((item, response.json["name"], expected))

        await asyncio.gather(writer(), *(reader(i) for i in ids for _ in range(3)))
        assert stale == []
        assert reader_cache.hot.hits > 0


async def test_a_hot_hit_resolves_no_tags(redis_server: RedisExecutor) -> None:
    # The hot entry is checked against the generations it was stored under: the rule's tags
    # are only needed to look a key up in Redis (and for the miss that stores it).
    resolved: list[int] = []

    def item_tags(request: Any) -> tuple[str, ...]:
        resolved.append(request.match_info["item_id"])
        return (f"item:{request.match_info['item_id']}",)

    rules: list[Any] = [CacheRule("/items/<item_id:int>", ttl=30, tags=item_tags),
                        *(rule for rule in RULES if isinstance(rule, InvalidationRule))]
    settings = settings_for_test()
    app, state, cache = build_app(RedisBackend.from_url(_url(redis_server), settings), settings,
                                  rules=rules)
    async with running(app) as client:
        await settle(cache)
        assert (await client.get("/items/1")).headers["x-cache"] == "MISS"
        for _ in range(5):
            assert (await client.get("/items/1")).headers["x-cache"] == "HIT"
        assert resolved == [1] and cache.hot is not None and cache.hot.hits == 5
        assert state.calls["item:1"] == 1
        assert (await client.patch("/items/1", json={"name": "uno"})).status == 200
        response = await client.get("/items/1")
        assert response.headers["x-cache"] == "MISS" and response.json["name"] == "uno"
        assert resolved == [1, 1]
