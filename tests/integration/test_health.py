"""Health endpoints over HTTP: normal state, Redis stopped, database unreachable.

Redis is a throwaway ``redis-server`` (pytest-redis) that a test stops and restarts; the
unreachable database is a real PostgreSQL reached through a TCP proxy that the test closes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pytest_redis import factories as redis_factories
from pytest_redis.executor import RedisExecutor
from sanic import Sanic

from app import create_app
from settings import Settings
from tests.server import Client, running

REDIS_PASSWORD = "health-redis-pw-51c7e0"
# A Redis of this module's own: tests stop and restart it without disturbing other modules.
health_redis = redis_factories.redis_proc(port=None, timeout=10, password=REDIS_PASSWORD)


def redis_url(proc: RedisExecutor) -> str:
    return f"redis://:{REDIS_PASSWORD}@{proc.host}:{proc.port}/0"


@pytest.fixture
def cache_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[str | None], None]:
    """Point the cache at a Redis URL (or none), with a quick breaker for outage tests.

    Timeouts stay generous (a refused connection fails at once anyway): the machine is shared
    and a slow answer must not trip the breaker in the normal-state tests.
    """

    def configure(url: str | None) -> None:
        monkeypatch.delenv("REDIS_PRIVATE_URL", raising=False)
        if url:
            monkeypatch.setenv("REDIS_URL", url)
        else:
            monkeypatch.delenv("REDIS_URL", raising=False)
        # This module's Redis outlives a test: a fresh namespace keeps their entries apart.
        monkeypatch.setenv("CACHE_NAMESPACE", f"health{uuid.uuid4().hex[:8]}")
        monkeypatch.setenv("CACHE_BREAKER_FAILURES", "2")
        monkeypatch.setenv("CACHE_BREAKER_RESET_SECONDS", "0.3")
        monkeypatch.setenv("REDIS_CONNECT_TIMEOUT", "5")
        monkeypatch.setenv("REDIS_SOCKET_TIMEOUT", "5")

    return configure


def build_app(settings: Settings) -> Sanic:
    """The service as ``create_app`` builds it, with its response cache."""
    app = create_app(settings)
    assert app.ctx.cache is not None
    return app


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings on a fresh SQLite file, for checks that do not depend on the database."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"database_url": f"sqlite://{tmp_path}/health.sqlite3",
                                  "secret_key": "test-secret-key-0123456789abcdef"}
        values.update(overrides)
        return Settings(**values)

    return make


@asynccontextmanager
async def service(make: Callable[..., Settings],
                  **overrides: Any) -> AsyncIterator[Client]:
    async with running(build_app(make(**overrides))) as client:
        yield client


async def until(predicate: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


# -- normal state ------------------------------------------------------------------------------

async def test_liveness_touches_nothing(sqlite_settings: Callable[..., Settings],
                                        cache_env: Callable[[str | None], None]) -> None:
    cache_env(None)
    async with service(sqlite_settings) as client:
        response = await client.get("/health")
    assert response.status == 200
    assert response.json == {"status": "ok"}


async def test_detailed_reports_database_cache_versions_uptime(
        make_settings: Callable[..., Settings], cache_env: Callable[[str | None], None],
        database_url: str) -> None:
    cache_env(None)
    async with service(make_settings) as client:
        response = await client.get("/health/detailed")
    assert response.status == 200
    body = response.json
    assert body["status"] == "ok"
    database = body["database"]
    assert database["status"] == "ok"
    assert database["engine"].startswith("SQLite (" if database_url.startswith("sqlite")
                                         else "PostgreSQL (")
    assert 0 <= database["latency_ms"] < CHECK_LATENCY_BOUND_MS
    assert body["cache"]["status"] == "healthy"
    assert body["cache"]["backend"] == "memory"
    assert body["cache"]["breaker"]["state"] == "closed"
    assert set(body["versions"]) == {"python", "sanic", "app"}
    assert body["versions"]["app"] == "0.1.0"
    assert body["uptime_seconds"] >= 0
    assert isinstance(body["pid"], int)


CHECK_LATENCY_BOUND_MS = 3_000  # the check's own timeout: a number, not a speed assertion


async def test_cache_health_on_redis_has_the_seed_shape(
        sqlite_settings: Callable[..., Settings], cache_env: Callable[[str | None], None],
        health_redis: RedisExecutor) -> None:
    url = redis_url(health_redis)
    cache_env(url)
    async with service(sqlite_settings, redis_url=url) as client:
        assert (await client.get("/api/posts")).status == 200
        assert (await client.get("/api/posts")).status == 200
        response = await client.get("/health/cache")
        detailed = await client.get("/health/detailed")
    assert response.status == 200
    body = response.json
    assert {"status", "backend", "latency_ms", "stats", "breaker"} <= set(body)
    assert body["status"] == "healthy"
    assert body["backend"] == "redis"
    assert isinstance(body["latency_ms"], float) and body["latency_ms"] > 0
    stats = body["stats"]
    assert {"hits", "misses", "hit_rate_percent", "redis_available"} <= set(stats)
    assert stats["redis_available"] is True
    assert (stats["misses"], stats["hits"], stats["stores"]) == (1, 1, 1)
    assert stats["hit_rate_percent"] == round(
        100 * stats["hits"] / (stats["hits"] + stats["misses"]), 2)
    assert body["breaker"]["state"] == "closed"
    assert body["redis_url"] == f"redis://:***@{health_redis.host}:{health_redis.port}/0"
    assert REDIS_PASSWORD not in response.text + detailed.text
    assert detailed.json["cache"]["redis_url"] == body["redis_url"]


async def test_cache_health_on_memory_is_healthy_not_degraded(
        sqlite_settings: Callable[..., Settings], cache_env: Callable[[str | None], None]) -> None:
    cache_env(None)
    async with service(sqlite_settings) as client:
        body = (await client.get("/health/cache")).json
    assert body["status"] == "healthy"
    assert body["backend"] == "memory"
    assert body["latency_ms"] == 0.0
    assert body["stats"]["redis_available"] is False


# -- Redis stopped -----------------------------------------------------------------------------

@pytest.mark.redis
async def test_redis_stopped_is_degraded_not_an_error(
        sqlite_settings: Callable[..., Settings], cache_env: Callable[[str | None], None],
        health_redis: RedisExecutor) -> None:
    url = redis_url(health_redis)
    cache_env(url)
    async with service(sqlite_settings, redis_url=url) as client:
        assert (await client.get("/health/cache")).json["status"] == "healthy"
        health_redis.stop()
        try:
            for _ in range(4):  # fail open, and trip the breaker (2 failures)
                assert (await client.get("/api/posts")).status == 200
            cache = await client.get("/health/cache")
            detailed = await client.get("/health/detailed")
            live = await client.get("/health")
            metrics = await client.get("/metrics")
        finally:
            health_redis.start()
        assert cache.status == 200
        assert cache.json["status"] == "degraded"
        assert cache.json["backend"] == "memory"
        assert cache.json["latency_ms"] is None
        assert "error" in cache.json
        assert cache.json["stats"]["redis_available"] is False
        assert cache.json["stats"]["errors"] >= 2
        assert cache.json["breaker"]["state"] == "open"
        assert detailed.status == 200  # the database is fine: Redis is optional
        assert detailed.json["status"] == "ok"
        assert detailed.json["cache"]["status"] == "degraded"
        assert detailed.json["cache"]["breaker"]["state"] == "open"
        assert live.status == 200
        assert metrics.status == 200
        assert 'cache_breaker_transitions_total{from_state="closed",to_state="open"} 1.0' \
            in metrics.text
        assert 'cache_errors_total{operation="lookup",route="/api/posts"}' in metrics.text
        for response in (cache, detailed, metrics):
            assert REDIS_PASSWORD not in response.text

        # Redis is back: after the breaker's reset timeout a request probes it and closes it.
        async def recovered() -> bool:
            await client.get("/api/posts")
            return bool((await client.get("/health/cache")).json["status"] == "healthy")

        await until(recovered)
        body = (await client.get("/health/cache")).json
        assert body["backend"] == "redis" and body["breaker"]["state"] == "closed"


# -- database unreachable ----------------------------------------------------------------------

class TcpProxy:
    """A loopback TCP proxy to a real server that a test can cut (listener and connections)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))


@pytest.mark.postgres
async def test_database_unreachable_is_503_and_recovers(
        postgres_url: str, cache_env: Callable[[str | None], None]) -> None:
    from tests.conftest import PG_HOST, PG_PORT

    cache_env(None)
    proxy = TcpProxy(PG_HOST, PG_PORT)
    await proxy.start()
    url = postgres_url.replace(f"@{PG_HOST}:{PG_PORT}/", f"@127.0.0.1:{proxy.port}/")
    app = build_app(Settings(database_url=url, secret_key="test-secret-key-0123456789abcdef"))
    async with running(app) as client:
        assert (await client.get("/health/detailed")).status == 200
        await proxy.stop()
        down = await client.get("/health/detailed")
        live = await client.get("/health")
        cache = await client.get("/health/cache")
        await proxy.start()  # same port: the pool reconnects

        async def recovered() -> bool:
            return bool((await client.get("/health/detailed")).status == 200)

        await until(recovered)
    assert down.status == 503
    body = down.json
    assert body["status"] == "error"
    assert body["database"]["status"] == "down"
    assert body["database"]["latency_ms"] is None
    assert body["database"]["engine"] == f"PostgreSQL (127.0.0.1:{proxy.port}/" \
        f"{postgres_url.rsplit('/', 1)[1]})"
    assert body["database"]["error"]
    assert set(body["versions"]) == {"python", "sanic", "app"}
    assert live.status == 200  # liveness does no I/O
    assert cache.status == 200
