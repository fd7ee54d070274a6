"""The Upstash REST backend over HTTP: the app in front, the REST stand-in
(``tests/upstash_standin.py``) over a real redis-server behind, every HTTP request counted.

Hits, misses and invalidation; the requests each costs; the restart check riding in the first
request; and every failure the protocol can bring (a wrong token, a server that hangs, one that
answers 503, a reply larger than the limit) ending as a client response that is not an error,
served uncached or from the memory fallback.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import replace
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from pytest_redis.executor import RedisExecutor

from app import create_app
from middleware import CacheBackendError, RedisBackend
from middleware.backends.rest import RestReplyError
from middleware.backends.upstash import RECHECK_SECONDS, UpstashBackend
from middleware.breaker import CLOSED, OPEN
from settings import Settings
from tests.integration.cache_testapp import AppState, build_app, settings_for_test
from tests.integration.test_cache_hot import settle
from tests.server import running
from tests.upstash_standin import UpstashStandin, standin_in_thread, upstash_standin

pytestmark = pytest.mark.redis

TOKEN = "rest-token-5d1e9a"


@pytest.fixture
async def standin(redis_server: RedisExecutor) -> AsyncIterator[UpstashStandin]:
    async with upstash_standin(f"redis://{redis_server.host}:{redis_server.port}/0",
                               TOKEN) as server:
        yield server


@asynccontextmanager
async def rest_app(standin: UpstashStandin, token: str = TOKEN,
                   **overrides: Any) -> AsyncIterator[tuple[Any, ...]]:
    """The library's test app with the backend chosen from the settings (no backend passed):
    the REST URL and token, no REDIS_URL."""
    settings = settings_for_test(rest_url=standin.url, rest_token=token, **overrides)
    app, state, cache = build_app(None, settings)
    async with running(app) as client:
        yield client, state, cache


async def test_hits_misses_and_invalidation_cost_one_request_each(
        standin: UpstashStandin) -> None:
    async with rest_app(standin) as (client, state, cache):
        assert isinstance(cache.tiers.remote, UpstashBackend)
        assert cache.hot is None  # REST cannot subscribe: no hot tier (CACHE_LOCAL is on)

        # The first request of the process carries the restart check in the same request.
        first = await client.get("/items/1")
        assert first.headers["x-cache"] == "MISS"
        assert standin.requests["/pipeline"] == 1

        # A write: the bump script. A Redis that never saw it answers NOSCRIPT once.
        before = standin.total_requests
        assert (await client.patch("/items/2", json={"name": "deux"})).status == 200
        assert standin.total_requests - before in (1, 2)
        before = standin.total_requests
        assert (await client.patch("/items/2", json={"name": "dos"})).status == 200
        assert standin.total_requests - before == 1

        before = standin.total_requests
        miss = await client.get("/items/2")
        assert miss.headers["x-cache"] == "MISS" and miss.json["name"] == "dos"
        assert standin.total_requests - before == 2  # MGET, SET

        before = standin.total_requests
        for _ in range(3):
            hit = await client.get("/items/2")
            assert hit.headers["x-cache"] == "HIT" and hit.json == miss.json
        assert standin.total_requests - before == 3  # one MGET each
        assert state.calls["item:2"] == 1

        assert (await client.patch("/items/2", json={"name": "zwei"})).status == 200
        fresh = await client.get("/items/2")
        assert fresh.headers["x-cache"] == "MISS" and fresh.json["name"] == "zwei"
        assert (await client.get("/items/2")).headers["x-cache"] == "HIT"
        assert state.calls["item:2"] == 2
        assert standin.requests["/pipeline"] == 1  # the check ran once
        assert standin.connections == 1  # one keep-alive connection carried every request
        assert cache.stats()["backend"] == "upstash" and cache.errors == 0


async def test_a_rest_write_clears_a_tcp_instances_hot_tier(
        standin: UpstashStandin, redis_server: RedisExecutor) -> None:
    # A mixed deployment on one database: a long-lived TCP instance with its hot tier beside
    # serverless REST instances. The REST bump publishes on the invalidation channel.
    settings = settings_for_test()
    state = AppState()
    tcp = build_app(RedisBackend.from_url(f"redis://{redis_server.host}:{redis_server.port}/0",
                                          settings), settings, state=state)
    rest = build_app(None, replace(settings, rest_url=standin.url, rest_token=TOKEN),
                     state=state)
    async with running(tcp[0]) as reader, running(rest[0]) as writer:
        await settle(tcp[2])
        stale = []
        for version in range(1, 11):
            for _ in range(2):  # hot on the TCP instance
                await reader.get("/items/1")
            assert (await writer.patch("/items/1", json={"name": f"v{version}"})).status == 200
            # Two instances, as two hosts: a read starting 5 ms after the acknowledgement (as
            # in test_cache_hot), the channel's one hop.
            await asyncio.sleep(0.005)
            seen = ((await reader.get("/items/1")).json["name"],
                    (await writer.get("/items/1")).json["name"])
            if seen != (f"v{version}", f"v{version}"):
                stale.append((version, seen))
        assert stale == []
        assert tcp[2].hot.hits >= 10  # the TCP reader really served from its hot tier


async def test_values_are_binary_safe_and_tcp_written_entries_are_read(
        standin: UpstashStandin, redis_server: RedisExecutor) -> None:
    backend = UpstashBackend.from_settings(
        settings_for_test(rest_url=standin.url, rest_token=TOKEN, namespace="bin"))
    value = bytes(range(256)) * 4
    try:
        await backend.set("bin:r:GET:/a/b?c=%2F", value, 30)
        assert await backend.get_many(["bin:r:GET:/a/b?c=%2F", "bin:none"]) == [value, None]
        with redis.Redis(host=redis_server.host, port=redis_server.port) as tcp:
            tcp.set("bin:tcp", value)  # a TCP instance's entry, the record's own bytes
        assert await backend.get_many(["bin:tcp"]) == [value]
    finally:
        await backend.close()


async def test_wrong_token_serves_from_memory_without_client_errors(
        standin: UpstashStandin, caplog: pytest.LogCaptureFixture) -> None:
    async with rest_app(standin, token="not-the-token") as (client, state, cache):
        responses = [await client.get("/items/1") for _ in range(5)]
        assert {r.status for r in responses} == {200}
        # Two 401s open the breaker (breaker_failures=2); then the memory fallback serves.
        assert [r.headers["x-cache"] for r in responses] == [
            "ERROR", "ERROR", "MISS", "HIT", "HIT"]
        assert cache.tiers.breaker.state == OPEN and cache.stats()["backend"] == "memory"
        assert standin.total_requests == 2
        assert "HTTP 401" in _errors(caplog)


async def test_a_hanging_server_costs_a_bounded_delay_then_the_breaker_opens(
        standin: UpstashStandin) -> None:
    standin.fault = "hang"
    async with rest_app(standin, connect_timeout=0.2, socket_timeout=0.3) as (client, _, cache):
        started = time.monotonic()
        first = await client.get("/items/1")
        assert time.monotonic() - started < 1.5  # connect + read timeouts, not forever
        assert first.status == 200 and first.headers["x-cache"] == "ERROR"
        await client.get("/items/1")
        assert cache.tiers.breaker.state == OPEN
        sent = standin.total_requests
        started = time.monotonic()
        served = [await client.get("/items/1") for _ in range(3)]
        assert time.monotonic() - started < 1.0  # the breaker sends nothing to the endpoint
        assert [r.headers["x-cache"] for r in served] == ["MISS", "HIT", "HIT"]
        assert standin.total_requests == sent


async def test_requests_stalled_together_are_one_incident_for_the_breaker(
        standin: UpstashStandin) -> None:
    # As with the TCP backend's one connection: however many requests a stall held, the
    # breaker counts it once, so one stall alone cannot open it.
    async with rest_app(standin, socket_timeout=0.3) as (client, _, cache):
        assert (await client.get("/items/1")).headers["x-cache"] == "MISS"
        standin.fault = "hang"
        stalled = await asyncio.gather(*(client.get(f"/items/{n}") for n in range(1, 9)))
        assert {r.status for r in stalled} == {200}
        assert {r.headers["x-cache"] for r in stalled} == {"ERROR"}
        assert cache.tiers.breaker.snapshot()["failures"] == 1
        assert cache.tiers.breaker.state == CLOSED
        await client.get("/items/1")  # a second stall: breaker_failures=2
        assert cache.tiers.breaker.state == OPEN


async def test_the_restart_check_runs_again_after_its_interval(
        standin: UpstashStandin, redis_server: RedisExecutor) -> None:
    # Behind a healthy endpoint a restarted Redis shows no error: the check is repeated.
    now = [1000.0]
    backend = UpstashBackend(
        UpstashBackend.from_settings(settings_for_test(rest_url=standin.url,
                                                       rest_token=TOKEN)).client,
        namespace="recheck", clock=lambda: now[0])
    try:
        await backend.get_many(["recheck:x"])
        await backend.get_many(["recheck:x"])
        assert (standin.requests["/pipeline"], standin.requests["/"]) == (1, 1)
        with redis.Redis(host=redis_server.host, port=redis_server.port) as tcp:
            tcp.delete("recheck:incarnation")  # as a restart with empty data leaves it
            epoch = tcp.get("recheck:gen:*epoch*")
            now[0] += RECHECK_SECONDS
            await backend.get_many(["recheck:x"])
            assert standin.requests["/pipeline"] == 2 and backend.resets == 2
            assert tcp.get("recheck:gen:*epoch*") != epoch
    finally:
        await backend.close()


def test_the_client_follows_a_new_event_loop(redis_server: RedisExecutor) -> None:
    # A serverless handler may run each invocation on a fresh loop: the backend opens its
    # session on whichever loop calls it.
    with standin_in_thread(f"redis://{redis_server.host}:{redis_server.port}/0",
                           TOKEN) as standin:
        backend = UpstashBackend.from_settings(
            settings_for_test(rest_url=standin.url, rest_token=TOKEN))
        for _ in range(2):
            assert asyncio.run(backend.get_many(["nothing"])) == [None]
        asyncio.run(backend.close())
        assert standin.connections == 2


async def test_5xx_falls_back_and_the_restart_check_runs_again(
        standin: UpstashStandin, caplog: pytest.LogCaptureFixture) -> None:
    async with rest_app(standin, breaker_failures=1, breaker_reset_seconds=0.0) as (
            client, _, cache):
        assert (await client.get("/items/1")).headers["x-cache"] == "MISS"
        assert standin.commands["EVAL"] == 1
        standin.fault = "503"
        failed = await client.get("/items/1")
        assert failed.status == 200 and failed.headers["x-cache"] == "ERROR"
        assert "HTTP 503" in _errors(caplog)
        standin.fault = None
        # The half-open probe's PING carries the restart check again: the endpoint may have
        # come back in front of a restarted Redis.
        assert (await client.get("/items/1")).headers["x-cache"] == "HIT"
        assert cache.tiers.breaker.state == CLOSED
        assert standin.commands["EVAL"] == 2


@pytest.mark.parametrize("fault", ["oversize", "oversize-chunked"])
async def test_a_reply_over_the_limit_is_refused_unread(
        standin: UpstashStandin, fault: str, caplog: pytest.LogCaptureFixture) -> None:
    async with rest_app(standin, rest_max_reply_bytes=64 * 1024) as (client, _, cache):
        assert (await client.get("/items/1")).headers["x-cache"] == "MISS"
        standin.fault = fault
        standin.oversize_bytes = 32 * 1024 * 1024
        response = await client.get("/items/1")
        assert response.status == 200 and response.headers["x-cache"] == "ERROR"
        assert "exceeds the limit of 65536" in _errors(caplog)
        # An answer, not an outage: the breaker stays closed and the next request is served.
        assert cache.tiers.breaker.state == CLOSED
        standin.fault = None
        assert (await client.get("/items/1")).headers["x-cache"] == "HIT"


async def test_the_service_selects_rest_from_the_environment(
        standin: UpstashStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    for name in ("REDIS_URL", "REDIS_PRIVATE_URL", "CACHE_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("UPSTASH_REDIS_REST_URL", standin.url)
    monkeypatch.setenv("UPSTASH_REDIS_REST_TOKEN", TOKEN)
    monkeypatch.setenv("CACHE_NAMESPACE", f"svc{int(time.time() * 1000)}")
    settings = Settings(database_url=f"sqlite://{tmp_path}/rest.sqlite3",
                        secret_key="test-secret-key-0123456789abcdef")
    async with running(create_app(settings)) as client:
        assert (await client.get("/api/posts")).headers["x-cache"] == "MISS"
        assert (await client.get("/api/posts")).headers["x-cache"] == "HIT"
        health = (await client.get("/health/cache")).json
        assert health["status"] == "healthy" and health["backend"] == "upstash"
        assert health["redis_url"] == standin.url and TOKEN not in str(health)
    assert standin.commands["MGET"] >= 2
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"Upstash REST cache connected (no TLS): {standin.url}, PING" in logged
    assert TOKEN not in logged


def _errors(caplog: pytest.LogCaptureFixture) -> str:
    """The backend errors the fail-open boundary logged, as one text."""
    return "\n".join(str(record.exc_info[1]) for record in caplog.records
                     if record.name == "middleware.cache" and record.exc_info)


async def test_the_standin_speaks_the_documented_protocol(standin: UpstashStandin) -> None:
    # What the backend relies on, checked on the stand-in itself with a plain HTTP client.
    auth = {"Authorization": f"Bearer {TOKEN}"}
    b64 = {**auth, "Upstash-Encoding": "base64"}
    async with httpx.AsyncClient(base_url=standin.url) as http:
        wrong = await http.post("/", json=["PING"], headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "error" in wrong.json()
        unknown = await http.post("/", json=["NOSUCHCOMMAND", "x"], headers=auth)
        assert unknown.status_code == 400
        assert unknown.json()["error"].startswith("ERR unknown command")
        assert (await http.post("/", json=["SET", "proto:k", "v\u00e9"], headers=b64)).json() \
            == {"result": "OK"}
        assert (await http.post("/", json=["GET", "proto:k"], headers=auth)).json() == {
            "result": "v\u00e9"}
        assert (await http.post("/", json=["GET", "proto:k"], headers=b64)).json() == {
            "result": base64.b64encode("v\u00e9".encode()).decode()}
        piped = await http.post("/pipeline", json=[["INCR", "proto:n"], ["INCR", "proto:k"]],
                                headers=b64)
        assert piped.json() == [{"result": 1},
                                {"error": "ERR value is not an integer or out of range"}]
        multi = await http.post("/multi-exec", json=[["INCR", "proto:n"], ["GET", "proto:n"]],
                                headers=b64)
        assert multi.json() == [{"result": 2}, {"result": base64.b64encode(b"2").decode()}]


async def test_an_error_reply_is_an_answer_not_an_outage(standin: UpstashStandin) -> None:
    backend = UpstashBackend.from_settings(
        settings_for_test(rest_url=standin.url, rest_token=TOKEN))
    try:
        (reply,) = await backend.client.execute([("NOSUCHCOMMAND", "x")])
        assert isinstance(reply, RestReplyError)
        assert str(reply).startswith("ERR unknown command")
        await backend.set("proto:counter", b"not a number", 30)
        with pytest.raises(CacheBackendError) as caught:  # INCR of a non-integer: answered
            await backend.incr_many(["proto:counter"])
        assert caught.value.transient is False
    finally:
        await backend.close()


async def test_a_keep_alive_connection_the_server_closed_is_retried_once(
        standin: UpstashStandin) -> None:
    # The race every keep-alive client meets: the server's idle timeout closes the
    # connection while the next request is already on its way. The stand-in shares this
    # loop, so the client writes its request before it can see the FIN. aiohttp retries
    # that only for idempotent HTTP methods, never a POST; the client retries it once.
    backend = UpstashBackend.from_settings(
        settings_for_test(rest_url=standin.url, rest_token=TOKEN))
    try:
        await backend.set("idle:k", b"v", 30)
        for round_ in range(3):
            assert standin.close_idle_connections() == 1
            assert await backend.get_many(["idle:k"]) == [b"v"]
            assert standin.connections == 2 + round_
    finally:
        await backend.close()


async def test_a_server_that_drops_every_request_is_tried_twice_then_an_outage(
        standin: UpstashStandin) -> None:
    backend = UpstashBackend.from_settings(
        settings_for_test(rest_url=standin.url, rest_token=TOKEN))
    try:
        await backend.ping()
        standin.fault = "drop"
        sent = standin.total_requests
        with pytest.raises(CacheBackendError) as caught:
            await backend.get_many(["idle:k"])
        assert caught.value.transient is True
        assert standin.total_requests - sent == 2
    finally:
        await backend.close()
