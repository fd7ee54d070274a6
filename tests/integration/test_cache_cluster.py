"""The cache on a real 3-master Redis Cluster (``REDIS_CLUSTER=true``), over HTTP: hits, misses
and invalidations; a slot migration under load; a killed master. With and without the hot tier.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from middleware.backends.cluster import ClusterBackend
from middleware.breaker import CLOSED
from settings import Settings
from tests.integration.api_support import register
from tests.integration.cache_testapp import AppState, build_app, settings_for_test
from tests.integration.test_cache_hot import until
from tests.redis_cluster import RedisClusterProcs
from tests.tls_redis import make_tls_files
from tests.server import Client, running

pytestmark = [pytest.mark.redis, pytest.mark.slow]

HOT = pytest.mark.parametrize("local_tier", [True, False], ids=["hot", "redis-only"])


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcs]:
    """Three masters on free loopback ports for the whole session, stopped at its end. Tests
    that break it (a killed master) start their own with ``own_cluster``."""
    cluster = RedisClusterProcs(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisClusterProcs]:
    cluster = RedisClusterProcs(tmp_path)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@asynccontextmanager
async def cluster_app(cluster: RedisClusterProcs, state: AppState | None = None,
                      **overrides: Any) -> AsyncIterator[Any]:
    """The test app with the cache built from settings, as ``REDIS_URL`` + ``REDIS_CLUSTER``
    would build it (no backend passed in). Two given one ``state`` are two instances."""
    settings = settings_for_test(redis_url=cluster.url, redis_cluster=True, **overrides)
    app, state, cache = build_app(None, settings, state=state)
    async with running(app) as client:
        assert isinstance(cache.tiers.remote, ClusterBackend)
        if settings.local_tier:  # subscribed on every master
            await until(lambda: cache.hot.healthy)
        await cache.ping()
        yield client, state, cache


def _cache_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.getMessage()}: {r.exc_info[1] if r.exc_info else ''}" for r in caplog.records
            if r.name == "middleware.cache"]


def _slot(cluster: RedisClusterProcs, cache: Any) -> int:
    return cluster.slot_of(cache.tiers.remote.slot_key)


@HOT
async def test_hits_misses_and_invalidations(redis_cluster: RedisClusterProcs,
                                             local_tier: bool) -> None:
    async with cluster_app(redis_cluster, local_tier=local_tier) as (client, state, cache):
        first = await client.get("/items/1")
        assert first.headers["x-cache"] == "MISS" and first.json["name"] == "one"
        for _ in range(3):
            hit = await client.get("/items/1")
            assert hit.headers["x-cache"] == "HIT" and hit.json["name"] == "one"
        assert state.calls["item:1"] == 1
        assert (await client.get("/items")).headers["x-cache"] == "MISS"

        assert (await client.patch("/items/1", json={"name": "uno"})).status == 200
        after = await client.get("/items/1")
        assert after.headers["x-cache"] == "MISS" and after.json["name"] == "uno"
        listed = await client.get("/items")
        assert listed.headers["x-cache"] == "MISS" and listed.json["items"][0] == "uno"
        assert (await client.get("/items/1")).headers["x-cache"] == "HIT"
        assert state.calls["item:1"] == 2 and state.calls["list"] == 2

        # Every key of the namespace is on the master that owns its slot, none elsewhere.
        ns = cache.settings.namespace
        owner = redis_cluster.owner(_slot(redis_cluster, cache))
        for port in redis_cluster.ports:
            keys = redis_cluster.node(port).keys(f"{{{ns}}}*")
            assert bool(keys) == (port == owner), (port, owner, keys)
        stats = cache.stats()
        assert (stats["errors"], stats["backend"], stats["hits"]) == (0, "redis", 4)


_PROBES = {"info", "hello", "client|setinfo"}
"""What this test's own connections send to read the counts."""


def _commands(cluster: RedisClusterProcs, port: int) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in cluster.node(port).info("commandstats").items()}


async def test_a_lookup_is_one_command_and_a_write_one_script(
        redis_cluster: RedisClusterProcs) -> None:
    """The hash tag keeps the single-node budget: hit 1 (MGET), miss 2 (MGET + SET), write 1
    (EVAL), all on the slot's owner."""
    async with cluster_app(redis_cluster, local_tier=False) as (client, state, cache):
        await client.get("/items/1")
        await client.get("/items/1")
        owner = redis_cluster.owner(_slot(redis_cluster, cache))

        async def cost(request: Any) -> dict[str, int]:
            before = {port: _commands(redis_cluster, port) for port in redis_cluster.ports}
            await request
            spent: dict[str, int] = {}
            for port in redis_cluster.ports:
                after = _commands(redis_cluster, port)
                for name, calls in after.items():
                    if calls != before[port].get(name, 0) and name not in _PROBES:
                        key = name if port == owner else f"{name}@other"
                        spent[key] = spent.get(key, 0) + calls - before[port].get(name, 0)
            return spent

        assert await cost(client.get("/items/1")) == {"mget": 1}
        await client.get("/items/2")  # item:2's counter created
        await client.patch("/items/2", json={"name": "deux"})
        assert await cost(client.get("/items/2")) == {"mget": 1, "set": 1}
        write = await cost(client.patch("/items/1", json={"name": "uno"}))
        assert write.pop("eval") == 1
        assert set(write) <= {"set", "incr", "publish"}  # counted from inside the script


class Load:
    """One writer bumping item 1's name (``v1``, ``v2``...) and readers checking that no read
    that started after a write was acknowledged returns an older name."""

    def __init__(self, client: Client, writes: int, readers: int, limit: int = 800,
                 reader: Client | None = None) -> None:
        self.client = client
        self.reader_client = reader or client
        """Where the readers read (another instance: its hot tier learns of the writer's
        writes from the invalidation channel only)."""
        self.limit = limit
        """Readers stop here: a bounded load, whatever the machine's speed."""
        self.writes = writes
        self.readers = readers
        self.acked = 0
        self.requests = 0
        self.errors: list[str] = []
        self.stale: list[str] = []
        self.done = False
        self.until = asyncio.Event()
        """The writer goes on (slowly) past ``writes`` until this is set."""
        self.until.set()
        self.phase = "before"
        """What the cluster is going through (named in failures)."""

    async def _get(self, path: str, client: Client | None = None) -> Any:
        response = await (client or self.client).get(path)
        self.requests += 1
        if response.status != 200:
            self.errors.append(f"GET {path}: {response.status} {response.text[:100]}")
        return response

    async def _check(self, client: Client | None = None) -> None:
        floor = self.acked
        response = await self._get("/items/1", client)
        name = response.json["name"] if response.status == 200 else ""
        version = int(name[1:]) if name.startswith("v") else 0
        if version < floor:
            self.stale.append(f"{self.phase}: read {name!r} after v{floor} was acknowledged")

    async def writer(self) -> None:
        i = 0
        try:
            while i < self.writes or not self.until.is_set():
                i += 1
                response = await self.client.patch("/items/1", json={"name": f"v{i}"})
                self.requests += 1
                if response.status != 200:
                    self.errors.append(f"PATCH: {response.status}")
                self.acked = i
                await self._check()
                await self._get("/items")
                if i >= self.writes:  # past the planned writes, a slow pace while waiting
                    await asyncio.sleep(0.02)
        finally:
            self.writes = i
            self.done = True

    async def reader(self) -> None:
        while not self.done and self.requests < self.limit:
            await self._check(self.reader_client)
            await self._get("/items/2", self.reader_client)

    async def run(self, *others: Any) -> None:
        await asyncio.gather(self.writer(), *(self.reader() for _ in range(self.readers)),
                             *others)

    async def after(self, requests: int) -> None:
        """Until ``requests`` more requests were answered."""
        target = self.requests + requests
        await until(lambda: self.requests >= target or self.done, timeout=30)
        assert not self.done, "the load ended before the step it was to overlap"


@HOT
async def test_a_slot_migration_under_load_gives_no_error_and_no_stale_read(
        redis_cluster: RedisClusterProcs, local_tier: bool,
        caplog: pytest.LogCaptureFixture) -> None:
    """Writes on one instance, reads on another (with the hot tier: coherent through the
    channel alone) while the namespace's slot moves to another master by hand."""
    async with cluster_app(redis_cluster, local_tier=local_tier,
                           breaker_failures=3) as (client, state, cache), \
            cluster_app(redis_cluster, state, local_tier=local_tier, breaker_failures=3,
                        namespace=cache.settings.namespace) as (other, _, other_cache):
        slot = _slot(redis_cluster, cache)
        source = redis_cluster.owner(slot)
        target = next(port for port in redis_cluster.ports if port != source)
        load = Load(client, writes=80, readers=3, reader=other)
        moved: list[int] = []

        async def migrate() -> None:
            await load.after(40)
            await asyncio.to_thread(redis_cluster.begin_migration, slot, source, target)
            load.phase = "migrating"
            await load.after(40)  # MIGRATING: keys still on the source are served there
            moved.append(await asyncio.to_thread(redis_cluster.migrate_keys, slot, source,
                                                 target))
            load.phase = "keys moved"
            await load.after(60)  # every key on the target: ASK for each of them
            await asyncio.to_thread(redis_cluster.end_migration, slot, source, target)
            load.phase = "moved"
            await load.after(40)  # MOVED, then the new owner

        await load.run(migrate())
        assert load.errors == [] and load.stale == [], (load.errors, load.stale)
        assert redis_cluster.owner(slot) == target and moved and moved[0] > 0
        assert redis_cluster.keys_in_slot(source, slot) == []
        assert redis_cluster.keys_in_slot(target, slot) != []
        # Followed, not failed open around: no cache error, Redis served throughout.
        for each in (cache, other_cache):
            stats = each.stats()
            assert (stats["errors"], stats["backend"], each.tiers.breaker.state) == (
                0, "redis", CLOSED), _cache_errors(caplog)
        router = cache.tiers.remote.router
        assert router.asked > 0 and router.moved > 0, (router.asked, router.moved)
        assert 300 <= load.requests <= 1000, load.requests
        if local_tier:
            assert other_cache.hot.hits > 0
            # The reader listens on every master.
            subscriber = other_cache.tiers.channel  # noqa: SLF001
            assert len(subscriber.subscribers) == 3 and subscriber.healthy
        final = await other.get("/items/1")
        assert final.json["name"] == f"v{load.writes}"


@HOT
async def test_a_killed_master_gives_no_client_error(own_cluster: RedisClusterProcs,
                                                     local_tier: bool) -> None:
    async with cluster_app(own_cluster, local_tier=local_tier, breaker_failures=2,
                           breaker_reset_seconds=0.2) as (client, state, cache):
        owner = own_cluster.owner(_slot(own_cluster, cache))
        load = Load(client, writes=60, readers=3)
        opened: list[str] = []

        async def kill() -> None:
            await load.after(40)
            await asyncio.to_thread(own_cluster.kill, owner)
            await load.after(60)
            opened.append(cache.tiers.breaker.state)

        await load.run(kill())
        assert load.errors == [] and load.stale == []
        assert opened and opened[0] != CLOSED  # the breaker fed, memory serving
        assert cache.stats()["backend"] == "memory"
        assert (await client.get("/items/1")).json["name"] == f"v{load.writes}"

        # The master comes back (empty: no persistence): the cache finds it again, resets
        # the epoch for the new incarnation and serves from the cluster.
        resets = cache.tiers.remote.incarnation.resets
        await asyncio.to_thread(own_cluster.start_node, owner)
        await asyncio.to_thread(own_cluster.wait_ok)
        for _ in range(200):  # requests drive the breaker's probe
            response = await client.get("/items/1")
            assert response.status == 200 and response.json["name"] == f"v{load.writes}"
            if (cache.tiers.breaker.state == CLOSED
                    and cache.tiers.remote.incarnation.resets > resets):
                break
            await asyncio.sleep(0.05)
        assert cache.tiers.breaker.state == CLOSED
        assert cache.tiers.remote.incarnation.resets > resets
        await client.get("/items/1")
        hit = await client.get("/items/1")
        assert hit.headers["x-cache"] == "HIT" and cache.stats()["backend"] == "redis"


async def test_a_failover_to_a_replica_is_followed(own_cluster: RedisClusterProcs) -> None:
    """The owner of the slot dies and its replica takes over: no client error, no stale read
    (a bump the replica never got is covered by the restart check's epoch reset), and the
    cache serves from the new master once the breaker probes it."""
    async with cluster_app(own_cluster, breaker_failures=2,
                           breaker_reset_seconds=0.2) as (client, state, cache):
        slot = _slot(own_cluster, cache)
        owner = own_cluster.owner(slot)
        replica = await asyncio.to_thread(own_cluster.add_replica, owner)
        load = Load(client, writes=60, readers=2, limit=600)
        load.until.clear()

        async def fail_over() -> None:
            try:
                await load.after(40)
                await asyncio.to_thread(own_cluster.kill, owner)
                load.phase = "failing over"
                await asyncio.to_thread(until_owner, own_cluster, slot, replica)
                load.phase = "failed over"
                await load.after(40)
            finally:
                load.until.set()

        resets = cache.tiers.remote.incarnation.resets
        await load.run(fail_over())
        assert load.errors == [] and load.stale == [], (load.errors, load.stale)
        for _ in range(200):  # requests drive the breaker's probe
            response = await client.get("/items/1")
            assert response.status == 200 and response.json["name"] == f"v{load.writes}"
            if cache.tiers.breaker.state == CLOSED and cache.stats()["backend"] == "redis":
                break
            await asyncio.sleep(0.05)
        assert cache.stats()["backend"] == "redis"
        assert cache.tiers.remote.incarnation.resets > resets  # the replica's own run_id
        await client.get("/items/1")
        assert (await client.get("/items/1")).headers["x-cache"] == "HIT"
        assert own_cluster.keys_in_slot(replica, slot) != []
        # The hot tier's channel now listens on the new master, not on the dead one.
        await until(lambda: cache.hot.healthy)
        listening = set(cache.tiers.channel.subscribers)  # noqa: SLF001
        assert any(url.endswith(f":{replica}") for url in listening)
        assert not any(url.endswith(f":{owner}") for url in listening)


def until_owner(cluster: RedisClusterProcs, slot: int, port: int) -> None:
    """Until a live node says ``port`` serves ``slot`` (the replica's promotion)."""
    deadline = time.monotonic() + 30
    alive = next(p for p in cluster.ports if cluster.procs[p].poll() is None)
    while True:
        for start, end, master, *_ in cluster.node(alive).execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end and int(master[1]) == port:
                return
        assert time.monotonic() < deadline, "the replica was never promoted"
        time.sleep(0.05)


async def test_keys_split_by_a_migration_fail_one_request_open_not_the_breaker(
        redis_cluster: RedisClusterProcs) -> None:
    """``TRYAGAIN``: mid-migration, a lookup whose keys are partly on each node (a new tag's
    counter missing on the source, the epoch still there) is served uncached; the breaker,
    which would send every request to memory, is not told."""
    async with cluster_app(redis_cluster, local_tier=False,
                           breaker_failures=1) as (client, state, cache):
        assert (await client.get("/items/1")).headers["x-cache"] == "MISS"
        slot = _slot(redis_cluster, cache)
        source = redis_cluster.owner(slot)
        target = next(port for port in redis_cluster.ports if port != source)
        await asyncio.to_thread(redis_cluster.begin_migration, slot, source, target)
        try:
            split = await client.get("/items/2")  # item:2's counter does not exist yet
            assert split.status == 200 and split.json["name"] == "two"
            assert split.headers["x-cache"] == "ERROR"
            assert cache.stats()["errors"] == 1 and cache.tiers.breaker.state == CLOSED
            assert (await client.get("/items/1")).headers["x-cache"] == "HIT"
        finally:
            await asyncio.to_thread(redis_cluster.migrate_keys, slot, source, target)
            await asyncio.to_thread(redis_cluster.end_migration, slot, source, target)
        assert (await client.get("/items/2")).headers["x-cache"] == "MISS"
        assert (await client.get("/items/2")).headers["x-cache"] == "HIT"


async def test_more_concurrent_requests_than_pooled_connections_wait_their_turn(
        redis_cluster: RedisClusterProcs) -> None:
    """redis-py fails a command when a node's pool is exhausted; the backend queues instead."""
    async with cluster_app(redis_cluster, local_tier=False) as (client, state, cache):
        paths = [f"/items/{i}" for i in range(1, 4)] * 100
        responses = await asyncio.gather(*(client.get(path) for path in paths))
        assert {r.status for r in responses} == {200}
        assert cache.stats()["errors"] == 0


async def test_a_tls_cluster_with_rediss(tmp_path: Path) -> None:
    """``rediss://``: every node (discovered ones too) and every channel connection verified
    against ``REDIS_TLS_CA_CERTS``."""
    files = make_tls_files(tmp_path)
    cluster = RedisClusterProcs(tmp_path, tls=files)
    try:
        cluster.start()
        async with cluster_app(cluster, tls_ca_certs=str(files / "ca.crt")) as (
                client, state, cache):
            assert cache.tiers.remote.url.startswith("rediss://")
            assert len(cache.tiers.channel.subscribers) == 3  # noqa: SLF001 - all TLS
            assert all(url.startswith("rediss://")
                       for url in cache.tiers.channel.subscribers)  # noqa: SLF001
            assert (await client.get("/items/1")).headers["x-cache"] == "MISS"
            assert (await client.get("/items/1")).headers["x-cache"] == "HIT"
            assert (await client.patch("/items/1", json={"name": "uno"})).status == 200
            after = await client.get("/items/1")
            assert after.headers["x-cache"] == "MISS" and after.json["name"] == "uno"
            assert cache.stats()["errors"] == 0 and state.calls["item:1"] == 2
    finally:
        cluster.stop()


async def test_the_service_on_a_cluster_from_its_environment(
        redis_cluster: RedisClusterProcs, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The real service, configured as a deploy would be (``REDIS_CLUSTER=true`` beside a
    ``REDIS_URL`` naming one node): feed MISS, HIT, a new post clears it."""
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    monkeypatch.setenv("CACHE_NAMESPACE", f"svc{uuid.uuid4().hex[:12]}")
    settings = Settings(database_url=f"sqlite://{tmp_path}/svc.sqlite3",
                        redis_url=redis_cluster.url,
                        secret_key="test-secret-key-0123456789abcdef")
    app = create_app(settings)
    async with running(app) as client:
        cache = app.ctx.cache
        assert isinstance(cache.tiers.remote, ClusterBackend)
        _, ann = await register(client, "ann")
        assert (await client.get("/api/posts")).headers["x-cache"] == "MISS"
        assert (await client.get("/api/posts")).headers["x-cache"] == "HIT"
        created = await client.post("/api/posts", json={"content": "hello"}, headers=ann)
        assert created.status == 201
        feed = await client.get("/api/posts")
        assert feed.headers["x-cache"] == "MISS"
        assert [p["content"] for p in feed.json["items"]] == ["hello"]
        assert cache.stats()["errors"] == 0 and cache.stats()["backend"] == "redis"
