"""One backend contract, run against memory, fakeredis and a real redis-server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis, FakeServer

from middleware import CacheBackend, CacheBackendError, CacheSettings, RedisBackend
from tests.integration.cache_testapp import BACKENDS, open_backend
from tests.server import free_port


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[CacheBackend]:
    backend = await open_backend(request.param, request, CacheSettings())
    yield backend
    await backend.close()


@pytest.fixture
def ns() -> str:
    return f"bt{uuid.uuid4().hex[:10]}"


async def test_set_and_get_many(backend: CacheBackend, ns: str) -> None:
    await backend.set(f"{ns}:a", b"1", 30)
    await backend.set(f"{ns}:b", b"\x00\xff binary", 30)
    assert await backend.get_many([f"{ns}:a", f"{ns}:missing", f"{ns}:b"]) == [
        b"1", None, b"\x00\xff binary"]


async def test_overwrite(backend: CacheBackend, ns: str) -> None:
    await backend.set(f"{ns}:a", b"1", 30)
    await backend.set(f"{ns}:a", b"2", 30)
    assert await backend.get_many([f"{ns}:a"]) == [b"2"]


async def test_delete(backend: CacheBackend, ns: str) -> None:
    await backend.set(f"{ns}:a", b"1", 30)
    assert await backend.delete([f"{ns}:a", f"{ns}:nope"]) == 1
    assert await backend.get_many([f"{ns}:a"]) == [None]


async def test_counters_start_at_zero_and_read_back(backend: CacheBackend, ns: str) -> None:
    keys = [f"{ns}:gen:a", f"{ns}:gen:b"]
    assert await backend.get_many(keys) == [None, None]
    assert await backend.incr_many(keys) == [1, 1]
    assert await backend.incr_many(keys[:1]) == [2]
    assert await backend.get_many(keys) == [b"2", b"1"]
    assert await backend.incr_many([]) == []


async def test_ttl_is_applied(backend: CacheBackend, ns: str) -> None:
    await backend.set(f"{ns}:short", b"x", 0.05)
    await backend.set(f"{ns}:long", b"y", 30)
    deadline = time.monotonic() + 5
    while await backend.get_many([f"{ns}:short"]) != [None]:
        assert time.monotonic() < deadline, "entry never expired"
        await asyncio.sleep(0.02)
    assert await backend.get_many([f"{ns}:long"]) == [b"y"]


async def test_ping(backend: CacheBackend) -> None:
    assert await backend.ping() >= 0.0


async def test_dead_port_is_one_bounded_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = 0
    real_open = asyncio.open_connection

    async def counting_open(*args: Any, **kwargs: Any) -> Any:
        nonlocal attempts
        attempts += 1
        return await real_open(*args, **kwargs)

    monkeypatch.setattr(asyncio, "open_connection", counting_open)
    port = free_port()  # nothing listens here
    backend = RedisBackend.from_url(f"redis://127.0.0.1:{port}/0", CacheSettings())
    with pytest.raises(CacheBackendError) as info:
        await backend.get_many(["k"])
    # One attempt plus the single quick reconnect; redis-py's default would retry 10 times.
    assert attempts <= 2
    assert info.value.transient and info.value.__cause__ is not None
    await backend.close()


async def test_fakeredis_disconnect_is_a_transient_error() -> None:
    server = FakeServer()
    backend = RedisBackend(FakeAsyncRedis(server=server))
    server.connected = False
    for call in (backend.get_many(["k"]), backend.set("k", b"v", 5), backend.incr_many(["g"]),
                 backend.ping()):
        with pytest.raises(CacheBackendError) as info:
            await call
        assert info.value.transient


async def test_redis_answering_an_error_is_not_transient() -> None:
    server = FakeServer()
    client = FakeAsyncRedis(server=server)
    await client.lpush("list", "x")
    backend = RedisBackend(client)
    with pytest.raises(CacheBackendError) as info:
        await backend.incr_many(["list"])
    assert not info.value.transient


@pytest.mark.redis
async def test_real_redis_uses_hiredis_and_the_blocking_pool(redis_server: Any) -> None:
    proc = redis_server
    backend = RedisBackend.from_url(f"redis://:pw@{proc.host}:{proc.port}/0",
                                    CacheSettings(pool_size=3))
    pool = backend.client.connection_pool
    assert type(pool).__name__ == "BlockingConnectionPool" and pool.max_connections == 3
    assert "Hiredis" in backend.parser
    assert backend.url_redacted == f"redis://:***@{proc.host}:{proc.port}/0"
    await backend.close()


@pytest.mark.parametrize("kind", ["fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
async def test_concurrent_reads_share_one_pipeline(kind: str,
                                                   request: pytest.FixtureRequest) -> None:
    backend = await open_backend(kind, request, CacheSettings())
    assert isinstance(backend, RedisBackend)
    ns = f"bt{uuid.uuid4().hex[:10]}"
    for n in range(5):
        await backend.set(f"{ns}:{n}", str(n).encode(), 30)
    replies = await asyncio.gather(*(backend.get_many([f"{ns}:{n}", f"{ns}:none"])
                                     for n in range(5)))
    assert replies == [[str(n).encode(), None] for n in range(5)]
    assert backend.batches == 1
    await backend.close()


async def test_a_failed_batch_fails_every_caller() -> None:
    server = FakeServer()
    backend = RedisBackend(FakeAsyncRedis(server=server))
    server.connected = False
    results = await asyncio.gather(*(backend.get_many(["k"]) for _ in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, CacheBackendError) and r.transient for r in results)
    server.connected = True
    assert await backend.get_many(["k"]) == [None]
