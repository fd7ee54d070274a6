"""A real redis-server that stalls, is busy or is full: how the breaker counts it, over HTTP.

- One stall with many requests waiting on the pipelined connection is ONE incident: it does
  not open the breaker by itself (it used to count once per request in flight).
- ``BUSY`` (a script past ``busy-reply-threshold``) means Redis cannot serve now: transient,
  it opens the breaker and the memory tier serves.
- ``OOM`` (``maxmemory`` reached under ``noeviction``) is an answer, not an outage: the breaker
  stays closed, reads still hit, and a write whose ``INCR`` Redis refused is never followed by
  a stale read: reads go uncached until the invalidation lands.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pytest_redis import factories as redis_factories
from redis.asyncio import Redis

from middleware import RedisBackend
from middleware.backends.base import CacheBackendError
from middleware.backends.redis import is_unavailable_reply
from middleware.breaker import CLOSED, OPEN
from tests.integration.cache_testapp import build_app, settings_for_test
from tests.server import running

pytestmark = pytest.mark.redis

# Its own server: these tests change its configuration and block it.
redis_faulty = redis_factories.redis_proc(port=None, timeout=10)

STALL_SCRIPT = """
local start = redis.call('TIME')
while true do
  local now = redis.call('TIME')
  if (now[1] - start[1]) * 1000000 + (now[2] - start[2]) > tonumber(ARGV[1]) then
    return 1
  end
end
"""


@pytest.fixture
async def admin(redis_faulty: Any) -> AsyncIterator[Redis]:
    client = Redis(host=redis_faulty.host, port=redis_faulty.port, socket_timeout=10)
    yield client
    await client.config_set("maxmemory", 0)
    await client.config_set("busy-reply-threshold", 5000)
    await client.aclose()


def _url(proc: Any) -> str:
    return f"redis://{proc.host}:{proc.port}/0"


async def _stall(admin: Redis, seconds: float) -> None:
    """Block the whole server for ``seconds`` (a busy-looping script, from another client)."""
    await admin.eval(STALL_SCRIPT, 0, str(int(seconds * 1_000_000)))


async def test_one_stall_with_many_requests_in_flight_is_one_incident(
        redis_faulty: Any, admin: Redis) -> None:
    settings = settings_for_test(breaker_failures=3, socket_timeout=0.2, connect_timeout=0.5)
    app, state, cache = build_app(RedisBackend.from_url(_url(redis_faulty), settings), settings)
    async with running(app) as client:
        assert (await client.get("/items/1")).headers["x-cache"] == "MISS"
        stall = asyncio.create_task(_stall(admin, 0.8))
        await asyncio.sleep(0.1)  # the script is running: every command now waits
        responses = await asyncio.gather(*(client.get(f"/items/{1 + i % 3}")
                                           for i in range(12)))
        await stall
        assert [r.status for r in responses] == [200] * 12
        assert cache.errors >= 12  # every request waited on the stalled connection...
        assert cache.breaker.failures == 1  # ...and they were one incident
        assert cache.breaker.state == CLOSED
        # Redis answers again: the next request reconnects and hits.
        assert (await client.get("/items/1")).headers["x-cache"] == "HIT"
        assert cache.breaker.failures == 0

        # Separate stalls are separate incidents: threshold 3 opens the breaker.
        for _ in range(3):
            stall = asyncio.create_task(_stall(admin, 0.5))
            await asyncio.sleep(0.1)
            assert (await client.get("/items/2")).status == 200
            await stall
        assert cache.breaker.state == OPEN
        response = await client.get("/items/2")
        assert response.status == 200 and response.headers["x-cache"] in {"MISS", "HIT"}


async def test_busy_replies_open_the_breaker_and_memory_serves(
        redis_faulty: Any, admin: Redis) -> None:
    settings = settings_for_test(breaker_failures=3, socket_timeout=2.0)
    app, state, cache = build_app(RedisBackend.from_url(_url(redis_faulty), settings), settings)
    async with running(app) as client:
        assert (await client.get("/items/1")).headers["x-cache"] == "MISS"
        await admin.config_set("busy-reply-threshold", 50)
        script_client = Redis(host=redis_faulty.host, port=redis_faulty.port, socket_timeout=10)
        stall = asyncio.create_task(_stall(script_client, 1.5))
        await asyncio.sleep(0.3)  # past the threshold: Redis answers BUSY to other clients
        statuses = []
        for _ in range(5):
            statuses.append((await client.get("/items/1")).status)
        assert statuses == [200] * 5
        assert cache.breaker.state == OPEN
        served = await client.get("/items/1")
        assert served.status == 200 and served.headers["x-cache"] == "HIT"  # memory tier
        assert cache.backend_name == "memory"
        await stall
        await script_client.aclose()


async def test_oom_is_an_answer_not_an_outage_and_a_refused_invalidation_is_not_stale(
        redis_faulty: Any, admin: Redis) -> None:
    settings = settings_for_test(breaker_failures=2)
    app, state, cache = build_app(RedisBackend.from_url(_url(redis_faulty), settings), settings)
    async with running(app) as client:
        assert (await client.get("/items/1")).json["name"] == "one"
        assert (await client.get("/items/1")).headers["x-cache"] == "HIT"
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", 1)  # full: every write command gets OOM
        for _ in range(4):  # reads still hit
            assert (await client.get("/items/1")).headers["x-cache"] == "HIT"
        missed = await client.get("/items/2")  # its SET is refused: served, not stored
        assert missed.status == 200 and missed.headers["x-cache"] == "MISS"
        assert cache.breaker.state == CLOSED

        # The write's INCR is refused: the read after it must not be the old entry.
        assert (await client.patch("/items/1", json={"name": "uno"})).status == 200
        for _ in range(3):
            after = await client.get("/items/1")
            assert after.status == 200 and after.json["name"] == "uno"
        assert cache.breaker.state == CLOSED

        await admin.config_set("maxmemory", 0)
        assert (await client.get("/items/1")).json["name"] == "uno"  # the replay landed
        hit = await client.get("/items/1")
        assert hit.headers["x-cache"] == "HIT" and hit.json["name"] == "uno"


@pytest.mark.parametrize(("reply", "transient"), [
    ("LOADING Redis is loading the dataset in memory", True),
    ("BUSY Redis is busy running a script.", True),
    ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", True),
    ("READONLY You can't write against a read only replica.", True),
    ("TRYAGAIN Multiple keys request during rehashing of slot", True),
    ("OOM command not allowed when used memory > 'maxmemory'.", False),
    ("WRONGTYPE Operation against a key holding the wrong kind of value", False),
    ("ERR unknown command 'FOO'", False),
])
def test_error_replies_are_classified_deliberately(reply: str, transient: bool) -> None:
    from middleware.backends.pipelined import ReplyError

    assert is_unavailable_reply(ReplyError(reply)) is transient


async def test_backend_error_carries_the_shared_incident(redis_faulty: Any,
                                                         admin: Redis) -> None:
    settings = settings_for_test(socket_timeout=0.2)
    backend = RedisBackend.from_url(_url(redis_faulty), settings)
    try:
        await backend.ping()
        stall = asyncio.create_task(_stall(admin, 0.6))
        await asyncio.sleep(0.1)
        results = await asyncio.gather(*(backend.get_many([f"k{i}"]) for i in range(5)),
                                       return_exceptions=True)
        await stall
        assert all(isinstance(r, CacheBackendError) and r.transient for r in results)
        incidents = {id(r.incident) for r in results}  # type: ignore[union-attr]
        assert len(incidents) == 1 and results[0].incident is not None  # type: ignore[union-attr]
    finally:
        await backend.close()
