"""The whole service against a real redis-server behind a fault proxy (``fault_proxy.py``).

For each network fault (latency above the socket timeout, blackhole, reset, half-close, stalled
replies): many concurrent clients read cached routes, and write, through the fault without one
5xx; the breaker opens within its threshold and, once the fault is gone, closes on ONE probe,
after which hits come from Redis again. One connection failure is one incident for the breaker,
however many requests were waiting on the connection. And no reply ever reaches the wrong
request while clients hang up at random, over HTTP and at the cache client.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from app import create_app
from middleware import CacheBackendError, RedisBackend
from middleware.breaker import CLOSED, OPEN
from middleware.settings import CacheSettings
from settings import Settings
from tests.integration.api_support import register
from tests.integration.fault_proxy import FaultProxy
from tests.server import Client, running

pytestmark = pytest.mark.redis

THRESHOLD = 3
RESET_SECONDS = 0.5
SOCKET_TIMEOUT = 0.3

FAULTS: dict[str, Callable[[FaultProxy], None]] = {
    "latency": lambda proxy: proxy.latency(0.5),  # each way, above the socket timeout
    "blackhole": FaultProxy.blackhole,
    "reset": FaultProxy.reset,
    "half_close": lambda proxy: proxy.half_close(after_bytes=3),  # shorter than any reply
    "stall": FaultProxy.stall_replies,
}


class Service:
    def __init__(self, client: Client, app: Any, proxy: FaultProxy) -> None:
        self.client = client
        self.app = app
        self.proxy = proxy
        self.posts: dict[int, str] = {}
        self.author: dict[str, str] = {}

    @property
    def cache(self) -> Any:
        return self.app.ctx.cache

    @property
    def connects(self) -> int:
        """Connections the cache's Redis client opened (or tried to)."""
        return int(self.cache.tiers.remote.client.connects)

    async def seed(self, count: int) -> list[str]:
        """``count`` posts, each with its own content; their paths."""
        _, self.author = await register(self.client, f"ann{uuid.uuid4().hex[:6]}")
        for n in range(count):
            content = f"post number {n} {uuid.uuid4().hex}"
            response = await self.client.post("/api/posts", json={"content": content},
                                              headers=self.author)
            assert response.status == 201, response.text
            self.posts[response.json["id"]] = content
        return [f"/api/posts/{post_id}" for post_id in self.posts]

    async def warm(self, paths: list[str]) -> None:
        for path in paths:
            await self.client.get(path)
            hit = await self.client.get(path)
            assert hit.status == 200 and hit.headers["x-cache"] == "HIT", path
        assert self.cache.tiers.backend_name == "redis"

    def check(self, path: str, response: Any) -> None:
        """A post's response is that post's (never another request's reply)."""
        assert response.status == 200, (path, response.status, response.text)
        post_id = int(path.rsplit("/", 1)[1])
        body = response.json
        assert body["id"] == post_id and body["content"] == self.posts[post_id], (path, body)


@pytest.fixture
async def proxy(redis_server: Any) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(redis_server.host, redis_server.port) as fault_proxy:
        yield fault_proxy


@asynccontextmanager
async def service_through(proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          *, socket_timeout: float = SOCKET_TIMEOUT,
                          local: bool = True) -> AsyncIterator[Service]:
    """The service with its cache on Redis through ``proxy``, with short timeouts;
    ``local=False``: without the hot tier, every hit goes to Redis."""
    for name, value in {"CACHE_NAMESPACE": f"faults{uuid.uuid4().hex[:12]}",
                        "CACHE_LOCAL": str(local).lower(),
                        "REDIS_SOCKET_TIMEOUT": str(socket_timeout),
                        "REDIS_CONNECT_TIMEOUT": str(SOCKET_TIMEOUT),
                        "CACHE_BREAKER_FAILURES": str(THRESHOLD),
                        "CACHE_BREAKER_RESET_SECONDS": str(RESET_SECONDS)}.items():
        monkeypatch.setenv(name, value)
    settings = Settings(database_url=f"sqlite://{tmp_path}/faults.sqlite3",
                        redis_url=proxy.url, secret_key="test-secret-key-0123456789abcdef")
    app = create_app(settings)
    async with running(app) as client:
        assert app.ctx.cache.tiers.configured_backend == "redis"
        yield Service(client, app, proxy)


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``predicate`` until true; the seconds it took (fails after ``timeout``)."""
    start = time.monotonic()
    while not predicate():
        elapsed = time.monotonic() - start
        assert elapsed < timeout, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.005)
    return time.monotonic() - start


async def recovers_on_one_probe(service: Service, paths: list[str]) -> None:
    """With the fault gone: the first request after the open period is the probe, closes the
    breaker and is a hit read from Redis; every warmed entry is a Redis hit again."""
    breaker = service.cache.tiers.breaker
    proxy = service.proxy
    proxy.pass_through()
    assert breaker.state == OPEN
    trips = breaker.trips
    await wait_for(lambda: breaker.snapshot()["retry_in_seconds"] == 0, RESET_SECONDS + 1,
                   "the open period ends")
    pings = proxy.seen[b"PING"]
    probe = await service.client.get(paths[0])
    service.check(paths[0], probe)
    assert breaker.state == CLOSED and breaker.trips == trips
    assert proxy.seen[b"PING"] == pings + 1, "one probe"
    assert probe.headers["x-cache"] == "HIT"
    stats = service.cache.stats()
    # Closing cleared the memory fallback and nothing refilled it: the hit came from Redis.
    assert stats["backend"] == "redis" and stats["memory_entries"] == 0
    for path in paths:
        again = await service.client.get(path)
        service.check(path, again)
        assert again.headers["x-cache"] == "HIT", path
    assert service.cache.stats()["memory_entries"] == 0
    health = (await service.client.get("/health/cache")).json
    assert health["status"] == "healthy" and health["backend"] == "redis"
    assert health["breaker"]["state"] == CLOSED and health["breaker"]["trips"] == trips


@pytest.mark.parametrize("fault", FAULTS)
async def test_no_5xx_through_the_fault_breaker_opens_and_one_probe_closes_it(
        fault: str, proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with service_through(proxy, tmp_path, monkeypatch) as service:
        paths = await service.seed(12)
        await service.warm(paths)
        breaker = service.cache.tiers.breaker
        statuses: Counter[int] = Counter()
        stop = asyncio.Event()
        rng = random.Random(fault)

        async def client_loop() -> None:
            while not stop.is_set():
                if rng.random() < 0.1:
                    response = await service.client.post(
                        "/api/posts", json={"content": "written through the fault"},
                        headers=service.author)
                    statuses[response.status] += 1
                    assert response.status == 201, response.text
                    continue
                path = rng.choice(paths)
                response = await service.client.get(path)
                statuses[response.status] += 1
                service.check(path, response)

        connects = service.connects
        FAULTS[fault](proxy)
        clients = [asyncio.create_task(client_loop()) for _ in range(16)]
        try:
            took = await wait_for(lambda: breaker.state == OPEN, 8.0, "the breaker opens")
            new_connections = service.connects - connects
            await asyncio.sleep(RESET_SECONDS + 0.3)  # open, then a failed probe or two
        finally:
            stop.set()
            done = await asyncio.gather(*clients, return_exceptions=True)
        failures = [outcome for outcome in done if outcome is not None]
        assert not failures, failures[0]
        assert not [status for status in statuses if status >= 500], statuses
        assert statuses[200] >= 16 and statuses[201] >= 1, statuses
        # Within its threshold: at most THRESHOLD new connections failed before it opened (the
        # one open before the fault may fail idle, a reset), each failure costing at most a
        # connect and a socket timeout.
        assert new_connections <= THRESHOLD, new_connections
        assert took < THRESHOLD * 2 * SOCKET_TIMEOUT + 2.0, took
        assert breaker.trips >= 1
        await recovers_on_one_probe(service, paths)


# Faults that hold requests on the connection until they fail it; the ones that fail it at
# once (reset, half-close) are applied after a delay line has gathered the requests.
HOLDING = {"blackhole": FaultProxy.blackhole, "stall": FaultProxy.stall_replies}
FAILING = {"reset": FaultProxy.reset, "half_close": lambda proxy: proxy.half_close(0)}


@pytest.mark.parametrize("fault", [*HOLDING, *FAILING])
async def test_one_connection_failure_is_one_incident_however_many_requests_wait(
        fault: str, proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """20 requests waiting on the one connection when it fails are ONE failure for the breaker
    (threshold 3); three separate failures open it."""
    in_flight = 20
    async with service_through(proxy, tmp_path, monkeypatch, socket_timeout=1.0,
                               local=False) as service:
        paths = await service.seed(10)
        await service.warm(paths)
        breaker = service.cache.tiers.breaker
        accepted, mgets = proxy.accepted, proxy.seen[b"MGET"]
        if fault in HOLDING:
            HOLDING[fault](proxy)
        else:
            proxy.latency(0.3)
        requests = [asyncio.create_task(service.client.get(paths[n % len(paths)]))
                    for n in range(in_flight)]
        await wait_for(lambda: proxy.seen[b"MGET"] - mgets >= in_flight, 0.9,
                       f"{in_flight} lookups wait on the connection")
        if fault in FAILING:
            FAILING[fault](proxy)
        responses = await asyncio.gather(*requests)
        for n, response in enumerate(responses):
            service.check(paths[n % len(paths)], response)
            assert response.headers["x-cache"] == "ERROR"
        assert proxy.accepted == accepted, "all of them waited on the one connection"
        assert breaker.state == CLOSED and breaker.failures == 1 and breaker.trips == 0, \
            breaker.snapshot()
        # Two more failures, each on its own new connection: the third opens the breaker.
        for failures in (2, 3):
            response = await service.client.get(paths[0])
            service.check(paths[0], response)
            assert response.headers["x-cache"] == "ERROR"
            assert proxy.accepted == accepted + failures - 1
            if failures < THRESHOLD:
                assert breaker.state == CLOSED and breaker.failures == failures
        assert breaker.state == OPEN and breaker.trips == 1, breaker.snapshot()
        during = await service.client.get(paths[1])  # served around Redis while it is open
        service.check(paths[1], during)
        assert proxy.accepted == accepted + 2
        await recovers_on_one_probe(service, paths)


async def test_replies_match_their_requests_while_clients_hang_up(
        proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Concurrent GETs of 40 different posts through a delay line, a third of them abandoned
    mid-flight (client timeout or task cancelled): every response that arrives is its own."""
    async with service_through(proxy, tmp_path, monkeypatch, socket_timeout=1.0) as service:
        paths = await service.seed(40)
        await service.warm(paths[:30])  # the other 10 miss first: SETs in the stream too
        proxy.latency(0.02)
        rng = random.Random(20261)
        outcomes: Counter[str] = Counter()
        deadline = time.monotonic() + 8.0

        async def one_request() -> None:
            path = rng.choice(paths)
            roll = rng.random()
            try:
                if roll < 0.2:
                    response = await service.client.get(path, timeout=rng.uniform(0.005, 0.06))
                elif roll < 0.35:
                    response = await asyncio.wait_for(service.client.get(path),
                                                      rng.uniform(0.005, 0.06))
                else:
                    response = await service.client.get(path)
            except (httpx.TimeoutException, TimeoutError):
                outcomes["abandoned"] += 1
                return
            service.check(path, response)
            outcomes[response.headers["x-cache"]] += 1

        async def client_loop() -> None:
            while outcomes.total() < 400 and time.monotonic() < deadline:
                await one_request()

        await asyncio.gather(*(client_loop() for _ in range(24)))
        proxy.pass_through()
        assert outcomes["abandoned"] >= 30 and outcomes["HIT"] >= 100, outcomes
        assert outcomes["ERROR"] == 0 and outcomes["BYPASS"] == 0, outcomes
        # Hang-ups are not Redis failures, and no entry was stored under another URL.
        breaker = service.cache.tiers.breaker
        assert breaker.state == CLOSED and breaker.trips == 0 and breaker.failures == 0
        for path in paths:
            response = await service.client.get(path)
            service.check(path, response)
            assert response.headers["x-cache"] == "HIT", path


async def test_get_many_results_match_their_keys_under_cancellation_and_faults(
        proxy: FaultProxy, redis_server: Any) -> None:
    """Many concurrent ``get_many`` on distinct keys through the proxy, a third cancelled at a
    random moment: first through a delay line (no error at all, one connection), then while the
    fault flips between pass, latency, reset and half-close (errors allowed, wrong values not)."""
    prefix = f"faults{uuid.uuid4().hex[:12]}"
    values = {f"{prefix}:{n}": f"value {n} {uuid.uuid4().hex}".encode() for n in range(300)}
    raw = Redis(host=redis_server.host, port=redis_server.port)
    try:
        await raw.mset(values)
    finally:
        await raw.aclose()
    keys = [*values, f"{prefix}:missing:1", f"{prefix}:missing:2"]
    backend = RedisBackend.from_url(proxy.url, CacheSettings(socket_timeout=0.5,
                                                             connect_timeout=0.5))
    rng = random.Random(7)

    async def storm(seconds: float) -> Counter[str]:
        outcomes: Counter[str] = Counter()
        deadline = time.monotonic() + seconds

        async def one_call() -> None:
            wanted = rng.sample(keys, rng.randint(1, 4))
            call = asyncio.create_task(backend.get_many(wanted))
            if rng.random() < 0.35:
                await asyncio.sleep(rng.uniform(0, 0.03))
                call.cancel()
            try:
                result = await call
            except asyncio.CancelledError:
                outcomes["cancelled"] += 1
                return
            except CacheBackendError as exc:
                assert exc.transient, exc
                outcomes["error"] += 1
                return
            assert result == [values.get(key) for key in wanted], (wanted, result)
            outcomes["ok"] += 1

        async def caller() -> None:
            while time.monotonic() < deadline:
                await one_call()

        await asyncio.gather(*(caller() for _ in range(32)))
        return outcomes

    async def flip_faults(stop: asyncio.Event) -> None:
        faults: list[Callable[[], None]] = [
            proxy.pass_through, lambda: proxy.latency(rng.uniform(0.001, 0.02)), proxy.reset,
            lambda: proxy.half_close(rng.randint(0, 400))]
        while not stop.is_set():
            rng.choice(faults)()
            await asyncio.sleep(rng.uniform(0.02, 0.08))
        proxy.pass_through()

    try:
        proxy.latency(0.01)
        calm = await storm(2.0)
        assert calm["error"] == 0 and calm["ok"] >= 200 and calm["cancelled"] >= 50, calm
        assert backend.client.connects == 1, "a cancelled call must not cost the connection"
        stop = asyncio.Event()
        flipper = asyncio.create_task(flip_faults(stop))
        try:
            rough = await storm(3.0)
        finally:
            stop.set()
            await flipper
        assert rough["ok"] >= 100 and rough["error"] >= 10 and rough["cancelled"] >= 50, rough
        assert proxy.resets >= 3 and backend.client.connects > 3
        assert await backend.get_many(keys[:3]) == [values[key] for key in keys[:3]]
    finally:
        await backend.close()
