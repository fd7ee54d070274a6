"""The cache library over HTTP on a small app, on memory, fakeredis and a real redis-server.

Hits are proven by counting handler calls, not only by headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import redis

from middleware import CacheBackend, CacheSettings
from tests.integration.cache_testapp import (
    BACKENDS, AppState, Gate, build_app, open_backend, settings_for_test,
)
from tests.server import Client, running


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
async def served(backend: CacheBackend,
                 settings: CacheSettings) -> AsyncIterator[tuple[Client, AppState, Any]]:
    app, state, cache = build_app(backend, settings)
    async with running(app) as client:
        yield client, state, cache


async def test_second_get_is_a_hit_without_the_handler(served: Any) -> None:
    client, state, cache = served
    first = await client.get("/items/1")
    second = await client.get("/items/1")
    assert first.status == second.status == 200
    assert first.json == second.json == {"id": 1, "name": "one"}
    assert state.calls["item:1"] == 1
    assert first.headers["x-cache"] == "MISS" and second.headers["x-cache"] == "HIT"
    assert second.headers["age"] == "0" and "age" not in first.headers
    assert first.headers["etag"] == second.headers["etag"]
    assert second.headers["cache-control"] == "no-cache"
    assert second.headers["content-type"] == "application/json"
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["stores"]) == (1, 1, 1)
    assert stats["hit_rate_percent"] == 50.0


async def test_stored_headers_come_back_on_hits(served: Any) -> None:
    client, state, _ = served
    await client.get("/items")
    hit = await client.get("/items")
    assert hit.headers["x-cache"] == "HIT" and hit.headers["x-total-count"] == "3"


async def test_a_hit_sends_every_header_line_once(served: Any) -> None:
    client, _, _ = served
    await client.get("/items")
    hit = await client.get("/items")
    assert hit.headers["x-cache"] == "HIT"
    for name in ("content-type", "content-length", "etag", "cache-control", "x-cache", "age",
                 "x-total-count", "connection"):
        assert len(hit.headers.get_list(name)) == 1, name
    assert hit.headers["content-length"] == str(len(hit.content))


async def test_response_middleware_headers_reach_hits_and_replace_the_records(
        backend: CacheBackend, settings: CacheSettings) -> None:
    app, _, _ = build_app(backend, settings)

    @app.on_response
    async def stamp(request: Any, response: Any) -> None:
        response.headers["x-served-by"] = "test\r\nx-injected: 1"  # Sanic strips the CR/LF
        response.headers["cache-control"] = "max-age=5"

    async with running(app) as client:
        await client.get("/items")
        hit = await client.get("/items")
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers.get_list("cache-control") == ["max-age=5"]
    assert hit.headers["x-served-by"] == "testx-injected: 1"
    assert "x-injected" not in hit.headers


async def test_query_canonicalisation_shares_entries(served: Any) -> None:
    client, state, _ = served
    await client.get("/items?limit=2&tag=a")
    hit = await client.get("/items?tag=a&limit=2&utm_source=x")
    assert hit.headers["x-cache"] == "HIT" and state.calls["list"] == 1
    other = await client.get("/items?limit=1&tag=a")
    assert other.headers["x-cache"] == "MISS" and state.calls["list"] == 2
    assert other.json == {"items": ["one"]}


async def test_an_encoded_slash_never_shares_an_entry_with_another_route(served: Any) -> None:
    client, _, _ = served
    assert (await client.get("/names/a%2Fb")).json == {"names": ["a%2Fb"]}
    other = await client.get("/names/a/b")
    assert other.json == {"names": ["a", "b"]} and other.headers["x-cache"] == "MISS"


async def test_if_none_match_on_a_hit_is_304_without_the_handler(served: Any) -> None:
    client, state, _ = served
    etag = (await client.get("/items/2")).headers["etag"]
    response = await client.get("/items/2", headers={"If-None-Match": etag})
    assert response.status == 304 and response.content == b""
    assert response.headers["etag"] == etag and state.calls["item:2"] == 1
    changed = await client.get("/items/2", headers={"If-None-Match": '"other"'})
    assert changed.status == 200 and changed.json["name"] == "two"


async def test_if_none_match_on_a_miss_matching_the_fresh_body(served: Any) -> None:
    client, state, _ = served
    etag = (await client.get("/items/3")).headers["etag"]
    await client.patch("/items/3", json={"name": "three"})  # same data, entry invalidated
    response = await client.get("/items/3", headers={"If-None-Match": etag})
    assert response.status == 304 and response.headers["x-cache"] == "MISS"
    assert state.calls["item:3"] == 2


async def test_etag_is_the_same_for_the_same_bytes_across_apps(
        served: Any, settings: CacheSettings) -> None:
    client, _, _ = served
    etag = (await client.get("/items/1")).headers["etag"]
    app, _, _ = build_app(None, settings_for_test())
    async with running(app) as other:
        assert (await other.get("/items/1")).headers["etag"] == etag


async def test_a_write_clears_exactly_its_tags(served: Any) -> None:
    client, state, cache = served
    for path in ("/items", "/items/1", "/items/2"):
        await client.get(path)
    response = await client.patch("/items/1", json={"name": "uno"})
    assert response.status == 200
    listing = await client.get("/items")
    item1 = await client.get("/items/1")
    item2 = await client.get("/items/2")
    assert listing.headers["x-cache"] == "MISS" and listing.json["items"][0] == "uno"
    assert item1.headers["x-cache"] == "MISS" and item1.json["name"] == "uno"
    assert item2.headers["x-cache"] == "HIT"
    assert (state.calls["list"], state.calls["item:1"], state.calls["item:2"]) == (2, 2, 1)
    assert cache.stats()["invalidations"] == 2


async def test_callable_invalidation_reads_the_handlers_context(served: Any) -> None:
    client, state, _ = served
    await client.get("/items/2")
    await client.get("/items/3")
    assert (await client.delete("/items/2")).status == 204
    assert (await client.get("/items/2")).json["name"] is None
    assert (await client.get("/items/3")).headers["x-cache"] == "HIT"


async def test_failed_writes_clear_nothing(served: Any) -> None:
    client, state, _ = served
    await client.get("/items")
    bad = await client.post("/items", content=b"not json",
                            headers={"content-type": "application/json"})
    assert bad.status >= 400
    assert (await client.get("/items")).headers["x-cache"] == "HIT"


async def test_a_write_failing_after_its_commit_still_clears(served: Any) -> None:
    client, state, _ = served
    await client.get("/items/2")
    assert (await client.post("/items/2/explode")).status == 500
    assert (await client.get("/items/2")).json["name"] == "committed before the failure"


@pytest.mark.parametrize(("path", "counter"), [
    ("/status/404", "status:404"),
    ("/status/500", "status:500"),
    ("/status/203", "status:203"),
    ("/big", "big"),
    ("/cookie", "cookie"),
    ("/private", "private"),
    ("/vary", "vary"),
])
async def test_never_stored(served: Any, path: str, counter: str) -> None:
    client, state, cache = served
    await client.get(path)
    again = await client.get(path)
    assert again.headers.get("x-cache") == "MISS"
    assert state.calls[counter] == 2 and cache.stats()["stores"] == 0


async def test_a_response_that_does_not_fit_a_record_is_served_unstored(
        served: Any, caplog: pytest.LogCaptureFixture) -> None:
    client, state, cache = served
    responses = [await client.get("/unfit") for _ in range(2)]
    assert [r.status for r in responses] == [200, 200]
    assert [r.headers["x-cache"] for r in responses] == ["MISS", "MISS"]
    assert state.calls["unfit"] == 2 and cache.stats()["stores"] == 0
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer x"}, {"Cookie": "session=1"}])
async def test_credentials_never_read_or_write_shared_entries(
        served: Any, headers: dict[str, str]) -> None:
    client, state, cache = served
    await client.get("/items/1")                         # a shared entry exists
    with_creds = await client.get("/items/1", headers=headers)
    assert with_creds.headers["x-cache"] == "BYPASS" and state.calls["item:1"] == 2
    await client.get("/items/2", headers=headers)          # must not create one
    anonymous = await client.get("/items/2")
    assert anonymous.headers["x-cache"] == "MISS"
    assert cache.stats()["bypasses"] == 2


async def test_public_rule_shares_entries_with_credentialed_requests(served: Any) -> None:
    client, state, _ = served
    await client.get("/public")
    hit = await client.get("/public", headers={"Authorization": "Bearer x"})
    assert hit.headers["x-cache"] == "HIT" and state.calls["public"] == 1


async def test_per_user_routes_key_by_identity(served: Any) -> None:
    client, state, _ = served
    ann = {"Authorization": "Bearer user-ann"}
    bob = {"Authorization": "Bearer user-bob"}
    assert (await client.get("/me", headers=ann)).json == {"user": "ann"}
    bob_first = await client.get("/me", headers=bob)
    assert bob_first.json == {"user": "bob"} and bob_first.headers["x-cache"] == "MISS"
    ann_again = await client.get("/me", headers=ann)
    assert ann_again.json == {"user": "ann"} and ann_again.headers["x-cache"] == "HIT"
    assert ann_again.headers["cache-control"] == "private, no-cache"
    anonymous = await client.get("/me")
    assert anonymous.headers["x-cache"] == "BYPASS" and anonymous.json == {"user": None}
    assert state.calls["me"] == 3


async def test_head_is_answered_from_the_get_entry(served: Any) -> None:
    client, state, _ = served
    get = await client.get("/items")
    head = await client.head("/items")
    assert head.status == 200 and head.content == b""
    assert head.headers["x-cache"] == "HIT" and head.headers["etag"] == get.headers["etag"]
    assert head.headers["content-length"] == str(len(get.content))
    assert state.calls["list"] == 1


async def test_client_no_cache_is_ignored_by_default(served: Any) -> None:
    client, state, _ = served
    await client.get("/items/1")
    again = await client.get("/items/1", headers={"Cache-Control": "no-cache"})
    assert again.headers["x-cache"] == "HIT" and state.calls["item:1"] == 1


async def test_client_no_cache_refreshes_when_configured(backend: CacheBackend) -> None:
    settings = settings_for_test(honor_client_no_cache=True)
    app, state, _ = build_app(backend, settings)
    async with running(app) as client:
        await client.get("/items/1")
        state.items[1] = "changed behind the cache's back"
        fresh = await client.get("/items/1", headers={"Cache-Control": "no-cache"})
        assert fresh.headers["x-cache"] == "MISS" and fresh.json["name"].startswith("changed")
        assert (await client.get("/items/1")).json["name"].startswith("changed")
        assert state.calls["item:1"] == 2


async def test_undecodable_record_is_a_miss_and_is_replaced(served: Any) -> None:
    client, state, cache = served
    await client.get("/items/1")
    from middleware.keys import response_key
    key = response_key(cache.settings.namespace, "/items/1")
    tier = cache.tiers.remote or cache.tiers.memory
    await tier.set(key, b"\x80\x04garbage", 30)
    broken = await client.get("/items/1")
    assert broken.status == 200 and broken.headers["x-cache"] == "MISS"
    assert (await client.get("/items/1")).headers["x-cache"] == "HIT"
    assert state.calls["item:1"] == 2 and cache.stats()["decode_errors"] == 1


async def test_concurrent_misses_run_the_handler_once(served: Any) -> None:
    client, state, cache = served
    state.gate = Gate()
    requests = [asyncio.create_task(client.get("/slow/1")) for _ in range(8)]
    await asyncio.wait_for(state.gate.entered.wait(), 10)
    await asyncio.sleep(0.2)  # let the others arrive and queue behind the leader
    state.gate.release.set()
    responses = await asyncio.gather(*requests)
    assert all(r.status == 200 and r.json == {"id": 1, "name": "one"} for r in responses)
    assert state.calls["slow:1"] == 1
    assert sorted(r.headers["x-cache"] for r in responses) == ["HIT"] * 7 + ["MISS"]


async def test_a_failing_leader_releases_its_waiters(served: Any) -> None:
    client, state, _ = served
    state.gate = Gate()
    state.fail_next = 1
    requests = [asyncio.create_task(client.get("/slow/2")) for _ in range(4)]
    await asyncio.wait_for(state.gate.entered.wait(), 10)
    await asyncio.sleep(0.2)
    state.gate.release.set()
    responses = await asyncio.wait_for(asyncio.gather(*requests), 10)
    statuses = sorted(r.status for r in responses)
    assert statuses == [200, 200, 200, 500]
    # Released waiters ran a handler themselves (or joined a new leader among them).
    assert 2 <= state.calls["slow:2"] <= 4


async def test_slow_miss_racing_a_write_never_leaves_old_data(served: Any) -> None:
    client, state, _ = served
    gate = state.gate = Gate()
    slow = asyncio.create_task(client.get("/slow/1"))
    await asyncio.wait_for(gate.entered.wait(), 10)     # it has read "one"...
    state.gate = None
    write = await client.patch("/items/1", json={"name": "uno"})
    assert write.status == 200
    # A read issued after the write neither waits for nor shares the slow, older miss.
    after_write = await asyncio.wait_for(client.get("/slow/1"), 5)
    assert after_write.json["name"] == "uno"
    gate.release.set()
    old = await slow                                      # ...and now stores it
    assert old.json["name"] == "one"
    for _ in range(2):
        assert (await client.get("/slow/1")).json["name"] == "uno"


async def test_helpers_resolve_the_running_app(served: Any) -> None:
    client, state, cache = served
    assert (await client.get("/helper-backed")).json == {"name": "one"}
    assert (await client.get("/helper-backed")).json == {"name": "one"}
    assert state.calls["helper-compute"] == 1
    state.items[1] = "uno"
    assert (await client.post("/helper/invalidate/profile")).status == 200
    assert (await client.get("/helper-backed")).json == {"name": "uno"}
    assert state.calls["helper-compute"] == 2
    stats = cache.stats()
    assert stats["hits"] == stats["misses"] == 0  # helper values are not response lookups


async def test_helper_read_through_racing_an_invalidation_never_keeps_old_data(
        served: Any) -> None:
    client, state, _ = served
    gate = state.gate = Gate()
    slow = asyncio.create_task(client.get("/helper-slow"))
    await asyncio.wait_for(gate.entered.wait(), 10)      # it has read "one"...
    state.gate = None
    state.items[1] = "uno"
    assert (await client.post("/helper/invalidate/profile")).status == 200
    gate.release.set()
    assert (await slow).json == {"name": "one"}           # ...and now stores it
    for _ in range(2):
        assert (await client.get("/helper-slow")).json == {"name": "uno"}


async def test_helpers_with_an_explicit_cache(served: Any) -> None:
    from middleware import get_cached, invalidate_cache, set_cached
    _, _, cache = served
    assert await get_cached("a:b", cache=cache) is None
    await set_cached("a:b", {"x": [1, 2]}, ttl=30, cache=cache)
    await set_cached("a:c", 5, cache=cache)
    assert await get_cached("a:b", cache=cache) == {"x": [1, 2]}
    await invalidate_cache("a:b", cache=cache)
    assert await get_cached("a:b", cache=cache) is None
    assert await get_cached("a:c", cache=cache) == 5
    await invalidate_cache("a", cache=cache)
    assert await get_cached("a:c", cache=cache) is None


@pytest.mark.redis
async def test_redis_commands_per_request_are_what_upstash_md_quotes(
        request: pytest.FixtureRequest, settings: CacheSettings) -> None:
    """Counted by the server itself (INFO commandstats): hit 1, miss 2, write 1 (one script;
    the commands it runs inside are counted too). A tag never seen before costs one script
    that creates its counter at a random base, once."""
    proc = request.getfixturevalue("redis_server")
    settings = replace(settings, local_tier=False)  # the hot tier's own count: test_cache_hot
    backend = await open_backend("redis", request, settings)
    app, _, _ = build_app(backend, settings)
    stats = redis.Redis(host=proc.host, port=proc.port)

    def calls() -> dict[str, int]:
        return {name.removeprefix("cmdstat_"): int(value["calls"])
                for name, value in stats.info("commandstats").items()}

    async def counted(method: str, path: str, **kwargs: Any) -> dict[str, int]:
        before = calls()
        response = await client.request(method, path, **kwargs)
        assert response.status < 400
        after = calls()
        return {name: n - before.get(name, 0) for name, n in after.items()
                if n != before.get(name, 0) and name != "info"}

    async with running(app) as client:
        await client.get("/items/9")  # the worker's one connection is open from here on
        # item:1's counter does not exist yet: the script creates it (SET NX for each of the
        # entry's 3 counters, then one MGET), then the entry is stored (SET).
        assert await counted("GET", "/items/1") == {"mget": 2, "eval": 1, "set": 4}
        assert await counted("GET", "/items/1") == {"mget": 1}
        # One script, one round trip: SET NX (no-ops here) and INCR per tag, and one PUBLISH
        # of the bumped counters on the invalidation channel (for the hot tiers).
        assert await counted("PATCH", "/items/1", json={"name": "uno"}) == {
            "eval": 1, "set": 2, "incr": 2, "publish": 1}
        assert await counted("GET", "/items/1") == {"mget": 1, "set": 1}
        assert await counted("GET", "/items/1") == {"mget": 1}
    stats.close()
    await backend.close()
