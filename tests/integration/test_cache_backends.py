"""One backend contract, run against memory, fakeredis and a real redis-server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis, FakeServer
from pytest_redis import factories as redis_factories

from middleware import CacheBackend, CacheBackendError, CacheSettings, MemoryBackend, RedisBackend
from middleware.backends.pipelined import PipelinedRedis
from tests.integration.cache_testapp import BACKENDS, open_backend
from tests.server import free_port


redis_with_password = redis_factories.redis_proc(port=None, password="secret", timeout=10)
redis_restartable = redis_factories.redis_proc(port=None, timeout=10)


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


async def test_counters_start_at_a_random_base_and_read_back(backend: CacheBackend,
                                                             ns: str) -> None:
    """A missing counter never starts at 0 or 1: once evicted or lost it must not come back
    to a value an old entry was stored under."""
    keys = [f"{ns}:gen:a", f"{ns}:gen:b"]
    assert await backend.get_many(keys) == [None, None]
    a, b = await backend.incr_many(keys)
    assert a >= 2**51 and b >= 2**51 and a != b
    assert await backend.incr_many(keys[:1]) == [a + 1]
    assert await backend.get_many(keys) == [str(a + 1).encode(), str(b).encode()]
    assert await backend.incr_many([]) == []
    c, d = await backend.init_many([keys[0], f"{ns}:gen:c"])  # existing kept, missing created
    assert c == a + 1 and d >= 2**51
    assert await backend.init_many([f"{ns}:gen:c"]) == [d]
    if isinstance(backend, MemoryBackend):
        return
    await backend.delete([keys[0]])  # evicted: recreated far from its old value
    (again,) = await backend.incr_many(keys[:1])
    assert abs(again - (a + 1)) > 2**20


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


async def test_dead_port_is_one_bounded_attempt() -> None:
    port = free_port()  # nothing listens here
    backend = RedisBackend.from_url(f"redis://127.0.0.1:{port}/0", CacheSettings())
    client = backend.client
    assert isinstance(client, PipelinedRedis)
    started = time.monotonic()
    for _ in range(3):
        with pytest.raises(CacheBackendError) as info:
            await backend.get_many(["k"])
        assert info.value.transient and info.value.__cause__ is not None
    # One connect attempt per call, no retries or backoff (redis-py's default retries 10 times).
    assert client.connects == 3 and time.monotonic() - started < 1.0
    await backend.close()


async def test_a_silent_server_costs_one_socket_timeout() -> None:
    """A server that accepts but never answers: every waiting call fails after the timeout."""
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    backend = RedisBackend.from_url(f"redis://127.0.0.1:{port}/0",
                                    CacheSettings(socket_timeout=0.2))
    started = time.monotonic()
    results = await asyncio.gather(*(backend.get_many(["k"]) for _ in range(5)),
                                   backend.set("k", b"v", 5), return_exceptions=True)
    elapsed = time.monotonic() - started
    assert all(isinstance(r, CacheBackendError) and r.transient for r in results)
    assert 0.15 < elapsed < 1.0
    await backend.close()
    silent.close()


async def test_a_connect_that_hangs_costs_one_connect_timeout() -> None:
    """The TCP connect succeeds but TLS never answers: bounded by the connect timeout."""
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    backend = RedisBackend.from_url(f"rediss://127.0.0.1:{port}/0",
                                    CacheSettings(connect_timeout=0.2, tls_insecure=True))
    started = time.monotonic()
    results = await asyncio.gather(*(backend.get_many(["k"]) for _ in range(4)),
                                   return_exceptions=True)
    assert all(isinstance(r, CacheBackendError) and r.transient for r in results)
    assert time.monotonic() - started < 1.0
    assert backend.client.connects == 1  # type: ignore[attr-defined] # concurrent calls share it
    await backend.close()
    silent.close()


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
async def test_password_and_database_from_the_url(redis_with_password: Any) -> None:
    proc = redis_with_password
    base = f"{proc.host}:{proc.port}"
    good = RedisBackend.from_url(f"redis://:secret@{base}/3", CacheSettings())
    await good.set("k", b"db3", 30)
    assert await good.get_many(["k"]) == [b"db3"]
    assert good.url_redacted == f"redis://:***@{base}/3"
    other_db = RedisBackend.from_url(f"redis://default:secret@{base}/4", CacheSettings())
    assert await other_db.get_many(["k"]) == [None]
    wrong = RedisBackend.from_url(f"redis://:nope@{base}/0", CacheSettings())
    with pytest.raises(CacheBackendError) as info:
        await wrong.get_many(["k"])
    assert info.value.transient  # the breaker counts it: a wrong password stays wrong
    for backend in (good, other_db, wrong):
        await backend.close()


@pytest.mark.redis
async def test_real_redis_restart_reconnects_on_the_next_call(redis_restartable: Any) -> None:
    proc = redis_restartable
    backend = RedisBackend.from_url(f"redis://{proc.host}:{proc.port}/0", CacheSettings())
    await backend.set("k", b"v", 30)
    proc.stop()
    with pytest.raises(CacheBackendError) as info:
        await backend.get_many(["k"])
    assert info.value.transient
    proc.start()
    assert await backend.get_many(["k"]) == [b"v"]  # a new connection (the dump reloaded)
    await backend.close()


@pytest.mark.parametrize("kind", ["fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
async def test_concurrent_reads_get_their_own_replies(
        kind: str, request: pytest.FixtureRequest) -> None:
    backend = await open_backend(kind, request, CacheSettings())
    assert isinstance(backend, RedisBackend)
    ns = f"bt{uuid.uuid4().hex[:10]}"
    for n in range(5):
        await backend.set(f"{ns}:{n}", str(n).encode(), 30)
    replies = await asyncio.gather(*(backend.get_many([f"{ns}:{n}", f"{ns}:none"])
                                     for n in range(5)))
    assert replies == [[str(n).encode(), None] for n in range(5)]
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


@pytest.mark.parametrize(("query", "insecure", "timeout"), [
    ("", False, 2.0),
    ("?ssl_cert_reqs=none", True, 2.0),
    ("?ssl_cert_reqs=required&socket_timeout=0.5", False, 0.5),
])
def test_url_options_the_cache_honours(query: str, insecure: bool, timeout: float) -> None:
    backend = RedisBackend.from_url(f"rediss://:pw@127.0.0.1:6380/0{query}", CacheSettings())
    client = backend.client
    assert isinstance(client, PipelinedRedis) and client.ssl_context is not None
    assert client.ssl_context.check_hostname is not insecure
    assert client.socket_timeout == timeout
