"""Stale entries over HTTP (``middleware.stale``): ``stale-while-revalidate`` and
``stale-if-error`` on memory, fakeredis and a real redis-server, with an injected wall clock.

Every test shows both halves where they apply: a current entry past its TTL is served, an
entry a write invalidated never is. Handler calls are counted, not only headers read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import http_sf
import pytest
from fakeredis import FakeAsyncRedis, FakeServer

from middleware import CacheBackend, CacheRule, CacheSettings, RedisBackend
from tests.integration.cache_testapp import (
    BACKENDS, RULES, AppState, Gate, build_app, open_backend, settings_for_test,
)
from tests.server import Client, running

TTL, SWR, SIE = 30, 10, 100

STALE_RULES = [
    *(rule for rule in RULES if rule.path not in {"/slow/<item_id:int>", "/status/<code:int>"}),
    CacheRule("/slow/<item_id:int>", ttl=TTL, tags=("item:{item_id}",),
              stale_while_revalidate=SWR, stale_if_error=SIE),
    CacheRule("/status/<code:int>", ttl=TTL, stale_while_revalidate=SWR, stale_if_error=SIE,
              advertise_stale=True),
]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Served:
    def __init__(self, client: Client, state: AppState, cache: Any, app: Any,
                 clock: Clock) -> None:
        self.client, self.state, self.cache, self.app, self.clock = (
            client, state, cache, app, clock)

    async def refreshed(self) -> None:
        await self.app.ctx.cache_hooks.refreshes.join()


@pytest.fixture
def settings() -> CacheSettings:
    return settings_for_test()


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest,
                  settings: CacheSettings) -> AsyncIterator[CacheBackend]:
    backend = await open_backend(request.param, request, settings)
    yield backend
    await backend.close()


@pytest.fixture
async def served(backend: CacheBackend, settings: CacheSettings) -> AsyncIterator[Served]:
    app, state, cache = build_app(backend, settings, rules=STALE_RULES)
    clock = Clock()
    cache.clock = clock
    async with running(app) as client:
        yield Served(client, state, cache, app, clock)


def cache_status(response: Any) -> tuple[str, dict[str, Any]]:
    """The one member of ``Cache-Status``, parsed strictly (RFC 8941 list, RFC 9211 params)."""
    members = http_sf.parse(response.headers["cache-status"].encode(), tltype="list")
    assert len(members) == 1
    name, params = members[0]
    return str(name), dict(params)


async def test_stale_while_revalidate_answers_at_once_and_refreshes_once(
        served: Served) -> None:
    client, state = served.client, served.state
    first = await client.get("/slow/1")
    assert first.headers["x-cache"] == "MISS" and state.calls["slow:1"] == 1
    state.items[1] = "changed out of band"  # no write rule saw it: only the TTL bounds it
    served.clock.now += TTL + 2
    state.gate = gate = Gate()
    stale = await asyncio.gather(*(client.get("/slow/1") for _ in range(5)))
    await asyncio.wait_for(gate.entered.wait(), 5)
    for response in stale:
        assert response.status == 200 and response.json == {"id": 1, "name": "one"}
        assert response.headers["x-cache"] == "STALE"
        assert response.headers["age"] == str(TTL + 2)
        assert cache_status(response) == ("response-cache", {"hit": True, "ttl": -2})
    assert state.calls["slow:1"] == 2  # exactly one refresh for five stale answers
    gate.release.set()
    await served.refreshed()
    fresh = await client.get("/slow/1")
    assert fresh.headers["x-cache"] == "HIT"
    assert fresh.json == {"id": 1, "name": "changed out of band"}
    assert cache_status(fresh) == ("response-cache", {"hit": True, "ttl": TTL})
    assert state.calls["slow:1"] == 2
    stats = served.cache.stats()
    assert (stats["stale"], stats["refreshes"], stats["refresh_failures"]) == (5, 1, 0)


async def test_an_invalidated_entry_is_never_served_stale(served: Served) -> None:
    client, state = served.client, served.state
    await client.get("/slow/1")
    assert (await client.patch("/items/1", json={"name": "uno"})).status == 200
    served.clock.now += TTL + 2  # within the stale-while-revalidate window
    state.fail_next = 1
    failed = await client.get("/slow/1")
    assert failed.status == 500 and failed.headers["x-cache"] == "MISS"
    assert cache_status(failed) == ("response-cache", {"fwd": http_sf.Token("uri-miss")})
    served.clock.now += SWR  # within the stale-if-error window
    state.fail_next = 1
    assert (await client.get("/slow/1")).status == 500
    fresh = await client.get("/slow/1")
    assert fresh.json == {"id": 1, "name": "uno"} and fresh.headers["x-cache"] == "MISS"
    assert state.calls["slow:1"] == 4
    assert served.cache.stats()["stale"] == 0


async def test_stale_if_error_serves_the_current_entry_instead_of_a_5xx(served: Served) -> None:
    client, state = served.client, served.state
    first = await client.get("/slow/1")
    served.clock.now += TTL + SWR + 5  # past stale-while-revalidate, within stale-if-error
    state.fail_next = 1
    rescued = await client.get("/slow/1")
    assert rescued.status == 200 and rescued.json == {"id": 1, "name": "one"}
    assert rescued.headers["x-cache"] == "STALE"
    assert rescued.headers["etag"] == first.headers["etag"]
    assert rescued.headers["content-length"] == str(len(rescued.content))
    assert rescued.headers["content-type"] == "application/json"
    assert cache_status(rescued) == ("response-cache", {
        "fwd": http_sf.Token("stale"), "fwd-status": 500, "ttl": -(SWR + 5)})
    assert state.calls["slow:1"] == 2  # the handler did run, and failed
    refreshed = await client.get("/slow/1")  # the handler works again: a miss that stores
    assert refreshed.headers["x-cache"] == "MISS"
    assert cache_status(refreshed) == ("response-cache",
                                       {"fwd": http_sf.Token("stale"), "stored": True})
    assert (await client.get("/slow/1")).headers["x-cache"] == "HIT"
    assert served.cache.stats()["stale_on_error"] == 1


async def test_past_every_window_an_error_is_an_error(served: Served) -> None:
    client, state = served.client, served.state
    await client.get("/slow/1")
    served.clock.now += TTL + SIE
    state.fail_next = 1
    failed = await client.get("/slow/1")
    assert failed.status == 500 and failed.headers["x-cache"] == "MISS"
    assert cache_status(failed) == ("response-cache", {"fwd": http_sf.Token("uri-miss")})


async def test_a_failed_refresh_keeps_the_stale_entry_and_the_next_one_retries(
        served: Served) -> None:
    client, state = served.client, served.state
    await client.get("/slow/1")
    served.clock.now += TTL + 1
    state.fail_next = 1
    assert (await client.get("/slow/1")).headers["x-cache"] == "STALE"
    await served.refreshed()
    assert state.calls["slow:1"] == 2 and served.cache.stats()["refresh_failures"] == 1
    assert (await client.get("/slow/1")).headers["x-cache"] == "STALE"  # retried
    await served.refreshed()
    assert state.calls["slow:1"] == 3
    assert (await client.get("/slow/1")).headers["x-cache"] == "HIT"


async def test_a_refresh_overtaken_by_a_write_stores_nothing_current(served: Served) -> None:
    client, state = served.client, served.state
    await client.get("/slow/1")
    served.clock.now += TTL + 1
    state.gate = gate = Gate()
    assert (await client.get("/slow/1")).headers["x-cache"] == "STALE"
    await asyncio.wait_for(gate.entered.wait(), 5)  # the refresh read "one"...
    assert (await client.patch("/items/1", json={"name": "uno"})).status == 200
    gate.release.set()  # ...and stores it under the generations it read before the write
    await served.refreshed()
    state.gate = None
    after = await client.get("/slow/1")
    assert after.headers["x-cache"] == "MISS" and after.json == {"id": 1, "name": "uno"}


async def test_a_stale_hit_answers_if_none_match_with_304(served: Served) -> None:
    client = served.client
    etag = (await client.get("/slow/1")).headers["etag"]
    served.clock.now += TTL + 1
    revalidated = await client.get("/slow/1", headers={"if-none-match": etag})
    assert revalidated.status == 304 and revalidated.headers["x-cache"] == "STALE"
    assert cache_status(revalidated) == ("response-cache", {"hit": True, "ttl": -1})
    await served.refreshed()


async def test_only_an_untagged_rule_advertises_its_stale_windows(served: Served) -> None:
    client = served.client
    untagged = await client.get("/status/200")
    assert untagged.headers["cache-control"] == (
        f"max-age={TTL}, stale-while-revalidate={SWR}, stale-if-error={SIE}")
    assert (await client.get("/status/200")).headers["cache-control"] == (
        untagged.headers["cache-control"])
    assert (await client.get("/slow/1")).headers["cache-control"] == "no-cache"


async def test_cache_status_on_every_outcome(served: Served) -> None:
    client = served.client
    miss = await client.get("/items")
    assert cache_status(miss) == ("response-cache",
                                  {"fwd": http_sf.Token("uri-miss"), "stored": True})
    served.clock.now += 4
    hit = await client.get("/items")
    assert cache_status(hit) == ("response-cache", {"hit": True, "ttl": TTL - 4})
    bypass = await client.get("/items", headers={"authorization": "Bearer x"})
    assert cache_status(bypass) == ("response-cache", {"fwd": http_sf.Token("bypass")})
    unstored = await client.get("/status/404")
    assert cache_status(unstored) == ("response-cache", {"fwd": http_sf.Token("uri-miss")})
    served.state.gate = gate = Gate()
    first = asyncio.create_task(client.get("/slow/2"))
    await asyncio.wait_for(gate.entered.wait(), 5)
    second = asyncio.create_task(client.get("/slow/2"))
    while served.cache.flights.coalesced < 1:  # until it waits on the single flight
        await asyncio.sleep(0.01)
    gate.release.set()
    assert cache_status(await first)[1]["stored"] is True
    assert cache_status(await second) == ("response-cache",
                                          {"hit": True, "ttl": TTL, "collapsed": True})


async def test_cache_status_names_a_backend_error_and_the_configured_name() -> None:
    server = FakeServer()
    settings = settings_for_test(status_name="edge cache/1")
    app, state, _ = build_app(RedisBackend(FakeAsyncRedis(server=server)), settings)
    async with running(app) as client:
        server.connected = False
        failed = await client.get("/items")
    assert failed.status == 200 and failed.headers["x-cache"] == "ERROR"
    assert cache_status(failed) == ("edge cache/1", {
        "fwd": http_sf.Token("uri-miss"), "detail": http_sf.Token("backend-error")})
    assert failed.headers["cache-status"].startswith('"edge cache/1"; ')


async def test_stale_if_error_covers_a_handler_that_times_out() -> None:
    """Sanic answers a handler slower than ``RESPONSE_TIMEOUT`` with a 503 (response
    middleware still run): the current stale entry is served instead."""
    from middleware import MemoryBackend

    app, state, cache = build_app(MemoryBackend(), settings_for_test(), rules=STALE_RULES)
    app.config.RESPONSE_TIMEOUT = 0.5
    clock = cache.clock = Clock()
    async with running(app) as client:
        await client.get("/slow/1")
        clock.now += TTL + SWR + 1
        state.gate = gate = Gate()  # the handler never answers
        try:
            rescued = await client.get("/slow/1")
        finally:
            gate.release.set()
    assert rescued.status == 200 and rescued.json == {"id": 1, "name": "one"}
    assert cache_status(rescued) == ("response-cache", {
        "fwd": http_sf.Token("stale"), "fwd-status": 503, "ttl": -(SWR + 1)})
