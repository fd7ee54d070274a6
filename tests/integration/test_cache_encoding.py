"""Compressed entries over HTTP, on memory, fakeredis and a real redis-server: each client gets
the coding it accepts, every representation decodes to the same JSON with its own ETag, 304s
work per representation, and Redis holds the compressed body."""

from __future__ import annotations

import asyncio
import gzip
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import brotli
import orjson
import pytest
import redis
from pytest_redis.executor import RedisExecutor
from sanic import Request, Sanic
from sanic.response import HTTPResponse, json

from middleware import (
    CacheBackend, CacheRule, CacheSettings, InvalidationRule, MemoryBackend, RedisBackend,
    install_cache,
)
from middleware.keys import response_key
from middleware.record import Record, decode
from tests.integration.cache_testapp import BACKENDS, open_backend, settings_for_test
from tests.server import Client, running
from tests.unit.test_cache_encoding import feed_page
from tests.unit.test_cache_record import version_1

PAGE = feed_page()
PAGE_JSON = orjson.loads(PAGE)
SMALL = {"id": 1, "name": "one"}

TTL, SWR, SIE = 30, 10, 100

RULES = [
    CacheRule("/feed", ttl=30, tags=("feed",)),
    CacheRule("/small", ttl=30, tags=("feed",)),
    CacheRule("/gzipped", ttl=30),
    CacheRule("/plain", ttl=30),
    CacheRule("/feed-stale", ttl=TTL, stale_while_revalidate=SWR, stale_if_error=SIE),
    InvalidationRule("POST", "/feed/touch", clears=("feed",)),
]


async def gzip_middleware(request: Request, response: HTTPResponse) -> None:
    """A typical compressing middleware: gzips what is not encoded yet, if the client takes it."""
    if ("gzip" in request.headers.get("accept-encoding", "")
            and "content-encoding" not in response.headers and len(response.body or b"") > 100):
        response.body = gzip.compress(response.body)
        response.headers["content-encoding"] = "gzip"


def build(backend: CacheBackend | None, settings: CacheSettings,
          compressor: str | None = None) -> tuple[Sanic, Counter[str]]:
    """``compressor``: also install ``gzip_middleware``, running ``"before"`` or ``"after"``
    the cache's response hook (Sanic runs response middleware in reverse order)."""
    app = Sanic(f"encodingtest_{uuid.uuid4().hex[:10]}")
    app.config.AUTO_EXTEND = False
    calls: Counter[str] = Counter()

    @app.route("/feed", methods=["GET", "HEAD"])
    async def feed(request: Request) -> HTTPResponse:
        calls["feed"] += 1
        return HTTPResponse(PAGE, content_type="application/json",
                            headers={"x-total-count": "20"})

    @app.get("/small")
    async def small(request: Request) -> HTTPResponse:
        calls["small"] += 1
        return json(SMALL)

    @app.get("/gzipped")
    async def gzipped(request: Request) -> HTTPResponse:
        # What a compressing middleware or a proxying handler hands the cache: a body already
        # encoded for this client, without a Vary that would have refused it before.
        calls["gzipped"] += 1
        return HTTPResponse(gzip.compress(PAGE), content_type="application/json",
                            headers={"content-encoding": "gzip"})

    @app.get("/plain")
    async def plain(request: Request) -> HTTPResponse:
        calls["plain"] += 1
        return HTTPResponse(PAGE, content_type="application/json")

    app.ctx.fail_next = 0

    @app.get("/feed-stale")
    async def feed_stale(request: Request) -> HTTPResponse:
        calls["feed-stale"] += 1
        if app.ctx.fail_next:
            app.ctx.fail_next -= 1
            return json({"error": "database down"}, status=503)
        return HTTPResponse(PAGE, content_type="application/json")

    @app.post("/feed/touch")
    async def touch(request: Request) -> HTTPResponse:
        return json({"ok": True})  # a write that leaves the feed as it was

    if compressor == "after":
        app.register_middleware(gzip_middleware, "response")
    install_cache(app, rules=RULES, settings=settings, backend=backend)
    if compressor == "before":
        app.register_middleware(gzip_middleware, "response")
    return app, calls


@pytest.fixture
def settings() -> CacheSettings:
    return settings_for_test(max_body_bytes=1024 * 1024)


@pytest.fixture(params=BACKENDS)
async def served(request: pytest.FixtureRequest,
                 settings: CacheSettings) -> AsyncIterator[tuple[Client, Counter[str], Any]]:
    backend = await open_backend(request.param, request, settings)
    app, calls = build(backend, settings)
    async with running(app) as client:
        yield client, calls, app.ctx.cache
    await backend.close()


async def raw_get(client: Client, path: str, **headers: str) -> tuple[Any, bytes]:
    """The response and its body as sent (httpx decodes ``.content``)."""
    async with client.stream("GET", path, headers=headers) as response:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    return response, body


def decoded(response: Any, body: bytes) -> Any:
    coding = response.headers.get("content-encoding")
    if coding == "br":
        body = brotli.decompress(body)
    elif coding == "gzip":
        body = gzip.decompress(body)
    else:
        assert coding is None
    return orjson.loads(body)


@pytest.mark.parametrize(("accept", "coding"), [
    ("gzip, deflate, br, zstd", "br"),
    ("gzip, br", "br"),
    ("gzip", "gzip"),
    ("identity", None),
    ("deflate", None),
    ("br;q=0.5, gzip", "gzip"),
    ("identity;q=0, gzip", "gzip"),
])
async def test_each_client_gets_the_coding_it_accepts_on_miss_and_hit(
        served: Any, accept: str, coding: str | None) -> None:
    client, calls, _ = served
    for outcome in ("MISS", "HIT"):
        response, body = await raw_get(client, "/feed", **{"Accept-Encoding": accept})
        assert response.status_code == 200 and response.headers["x-cache"] == outcome
        assert response.headers.get_list("content-encoding") == ([coding] if coding else [])
        assert response.headers["content-length"] == str(len(body))
        assert response.headers.get_list("vary") == ["Accept-Encoding"]
        assert response.headers["x-total-count"] == "20"
        assert response.headers["content-type"] == "application/json"
        assert decoded(response, body) == PAGE_JSON
    assert calls["feed"] == 1
    if coding is not None:
        assert len(body) <= 0.35 * len(PAGE)


async def test_etags_differ_per_coding_and_are_stable(served: Any) -> None:
    client, calls, _ = served
    etags = {}
    for accept in ("br", "gzip", "identity", "br", "gzip", "identity"):
        response, _ = await raw_get(client, "/feed", **{"Accept-Encoding": accept})
        etags.setdefault(accept, set()).add(response.headers["etag"])
    assert all(len(tags) == 1 for tags in etags.values())
    identity, = etags["identity"]
    assert etags["br"] == {identity[:-1] + '-br"'} and etags["gzip"] == {identity[:-1] + '-gzip"'}
    assert calls["feed"] == 1


@pytest.mark.parametrize("path", ["/feed", "/feed-after-a-write"])
async def test_304_per_representation(served: Any, path: str) -> None:
    client, calls, _ = served
    tags = {}
    for accept in ("br", "gzip", "identity"):
        response, _ = await raw_get(client, "/feed", **{"Accept-Encoding": accept})
        tags[accept] = response.headers["etag"]
    expected = "HIT"
    if path == "/feed-after-a-write":
        # The entry is gone but the body is the same: the miss path answers 304 too.
        assert (await client.post("/feed/touch")).status == 200
        expected = "MISS"
    for accept, etag in tags.items():
        response, body = await raw_get(client, "/feed", **{"Accept-Encoding": accept,
                                                           "If-None-Match": etag})
        assert response.status_code == 304 and body == b"", accept
        assert response.headers["etag"] == etag and response.headers["x-cache"] == expected
        assert "content-encoding" not in response.headers
        assert response.headers.get_list("vary") == ["Accept-Encoding"]
        expected = "HIT"
        # Another representation's ETag does not validate this one: the full body comes back.
        other = next(tag for a, tag in tags.items() if a != accept)
        response, body = await raw_get(client, "/feed", **{"Accept-Encoding": accept,
                                                           "If-None-Match": other})
        assert response.status_code == 200 and response.headers["etag"] == etag
        assert decoded(response, body) == PAGE_JSON
    assert calls["feed"] == (2 if path == "/feed-after-a-write" else 1)


async def test_a_head_hit_reports_the_length_of_the_encoded_body(served: Any) -> None:
    client, _, _ = served
    _, body = await raw_get(client, "/feed", **{"Accept-Encoding": "br"})
    head = await client.head("/feed", headers={"Accept-Encoding": "br"})
    assert head.headers["x-cache"] == "HIT" and head.headers["content-encoding"] == "br"
    assert head.headers["content-length"] == str(len(body))


async def test_bodies_below_the_threshold_are_stored_and_sent_as_they_are(served: Any) -> None:
    client, calls, cache = served
    for outcome in ("MISS", "HIT"):
        response, body = await raw_get(client, "/small", **{"Accept-Encoding": "gzip, br"})
        assert response.headers["x-cache"] == outcome
        assert "content-encoding" not in response.headers and "vary" not in response.headers
        assert orjson.loads(body) == SMALL
        assert response.headers["content-length"] == str(len(body))
    assert calls["small"] == 1


async def test_the_threshold_is_a_setting(settings: CacheSettings) -> None:
    app, calls = build(MemoryBackend(), replace(settings, compress_min_bytes=len(PAGE) + 1))
    async with running(app) as client:
        for _ in range(2):
            response, body = await raw_get(client, "/feed", **{"Accept-Encoding": "br"})
            assert "content-encoding" not in response.headers and body == PAGE
    assert calls["feed"] == 1


async def test_a_body_encoded_before_the_cache_is_never_stored(served: Any) -> None:
    client, calls, cache = served
    for _ in range(3):
        response, body = await raw_get(client, "/gzipped", **{"Accept-Encoding": "gzip"})
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["x-cache"] == "MISS"
        assert decoded(response, body) == PAGE_JSON
    assert calls["gzipped"] == 3 and cache.stats()["stores"] == 0


@pytest.mark.parametrize("order", ["before", "after"])
async def test_a_compressing_middleware_beside_the_cache_never_encodes_twice(
        settings: CacheSettings, order: str) -> None:
    app, calls = build(MemoryBackend(), settings, compressor=order)
    seen = []
    async with running(app) as client:
        for accept in ("gzip", "identity", "gzip, br", "gzip", "identity", "br"):
            response, body = await raw_get(client, "/plain", **{"Accept-Encoding": accept})
            assert decoded(response, body) == PAGE_JSON, accept
            assert response.headers["content-length"] == str(len(body))
            seen.append(response.headers["x-cache"])
    if order == "before":
        # It encoded the miss for one client before the cache saw it: stored only once a
        # client that it does not gzip for (identity) asked.
        assert seen == ["MISS", "MISS", "HIT", "HIT", "HIT", "HIT"]
    else:
        assert seen == ["MISS", "HIT", "HIT", "HIT", "HIT", "HIT"]


async def test_memory_tier_counts_the_compressed_size(settings: CacheSettings) -> None:
    backend = MemoryBackend()
    app, _ = build(backend, settings)
    async with running(app) as client:
        await client.get("/feed", headers={"Accept-Encoding": "identity"})
        assert (await client.get("/feed")).headers["x-cache"] == "HIT"
    assert 0 < backend.size_bytes <= 0.35 * len(PAGE)


async def until_hot(cache: Any) -> None:
    """The hot tier subscribed and trusted (see tests/integration/test_cache_hot.py)."""
    deadline = time.monotonic() + 10
    while cache.hot is None or not cache.hot.healthy:
        assert time.monotonic() < deadline, "the hot tier never became healthy"
        await asyncio.sleep(0.02)


@pytest.mark.redis
async def test_redis_and_the_hot_tier_hold_the_compressed_body(
        redis_server: RedisExecutor) -> None:
    client_redis = redis.Redis(host=redis_server.host, port=redis_server.port)
    usage, hot_bytes = {}, {}
    for name, threshold in (("plain", 10**9), ("compressed", 1024)):
        settings = settings_for_test(max_body_bytes=1024 * 1024, compress_min_bytes=threshold)
        backend = RedisBackend.from_url(f"redis://{redis_server.host}:{redis_server.port}/0",
                                        settings)
        app, _ = build(backend, settings)
        async with running(app) as client:
            await until_hot(app.ctx.cache)
            for outcome in ("MISS", "HIT"):
                response = await client.get("/feed", headers={"Accept-Encoding": "gzip, br"})
                assert response.headers["x-cache"] == outcome and response.json == PAGE_JSON
            hot_bytes[name] = app.ctx.cache.hot.size_bytes
        usage[name] = client_redis.memory_usage(response_key(settings.namespace, "/feed"))
        await backend.close()
    assert usage["plain"] > len(PAGE) and hot_bytes["plain"] > len(PAGE)
    assert usage["compressed"] <= 0.35 * usage["plain"], usage
    assert hot_bytes["compressed"] <= 0.35 * hot_bytes["plain"], hot_bytes


@pytest.mark.redis
async def test_an_entry_of_the_previous_record_format_is_a_miss(
        redis_server: RedisExecutor, settings: CacheSettings) -> None:
    client_redis = redis.Redis(host=redis_server.host, port=redis_server.port)
    settings = replace(settings, local_tier=False)
    backend = RedisBackend.from_url(f"redis://{redis_server.host}:{redis_server.port}/0",
                                    settings)
    app, calls = build(backend, settings)
    key = response_key(settings.namespace, "/feed")
    async with running(app) as client:
        await client.get("/feed")
        current = decode(client_redis.get(key))
        client_redis.set(key, version_1(Record(
            status=200, stored_at=current.stored_at, generations=current.generations,
            content_type="application/json", etag=current.etag, headers=(), body=b"old")))
        response = await client.get("/feed", headers={"Accept-Encoding": "br"})
        assert response.status == 200 and response.headers["x-cache"] == "MISS"
        assert response.json == PAGE_JSON and calls["feed"] == 2
        assert app.ctx.cache.stats()["decode_errors"] == 1
        assert (await client.get("/feed")).headers["x-cache"] == "HIT"  # overwritten
    assert decode(client_redis.get(key)).encoding == "br"
    await backend.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("accept", "coding"), [("gzip, br", "br"), ("gzip", "gzip"),
                                                ("identity", None)])
async def test_stale_answers_come_in_the_accepted_coding(
        settings: CacheSettings, accept: str, coding: str | None) -> None:
    app, calls = build(MemoryBackend(), settings)
    clock = Clock()
    app.ctx.cache.clock = clock
    ask = {"Accept-Encoding": accept}
    async with running(app) as client:
        response, _ = await raw_get(client, "/feed-stale", **ask)
        etag = response.headers["etag"]
        # stale-while-revalidate: served at once in the client's coding; the refresh stores.
        clock.now += TTL + 1
        response, body = await raw_get(client, "/feed-stale", **ask)
        assert response.headers["x-cache"] == "STALE" and response.headers["etag"] == etag
        assert response.headers.get("content-encoding") == coding
        assert response.headers["content-length"] == str(len(body))
        assert decoded(response, body) == PAGE_JSON
        await app.ctx.cache_hooks.refreshes.join()
        assert calls["feed-stale"] == 2
        # stale-if-error: the handler fails past the revalidate window; the entry answers.
        clock.now += TTL + SWR + 5
        app.ctx.fail_next = 1
        response, body = await raw_get(client, "/feed-stale", **ask)
        assert response.status_code == 200 and response.headers["x-cache"] == "STALE"
        assert response.headers.get("content-encoding") == coding
        assert response.headers["etag"] == etag
        assert response.headers["content-length"] == str(len(body))
        assert decoded(response, body) == PAGE_JSON
        app.ctx.fail_next = 1
        response, body = await raw_get(client, "/feed-stale", **ask, **{"If-None-Match": etag})
        assert response.status_code == 304 and response.headers["etag"] == etag
        assert "content-encoding" not in response.headers
    assert calls["feed-stale"] == 4
