"""The real service's feed, compressed in its cache (memory, and a real redis-server): every
client gets the same JSON in the coding it accepts, hits skip the database, and the entry
holds the brotli body."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import brotli
import orjson
import pytest
import redis

from middleware.keys import response_key
from middleware.record import decode
from tests.integration.api_support import register
from tests.integration.test_service_cache import Statements, start_service
from tests.server import running


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def service(request: pytest.FixtureRequest, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Any, Any, Any]]:
    url = None
    if request.param == "redis":
        proc = request.getfixturevalue("redis_server")
        url = f"redis://{proc.host}:{proc.port}/0"
    app, statements = await start_service(tmp_path, url, monkeypatch)
    async with running(app) as client:
        statements.install()
        yield client, app, statements


async def test_the_feed_is_served_in_each_accepted_coding_from_one_entry(
        service: tuple[Any, Any, Statements]) -> None:
    client, app, statements = service
    _, ann = await register(client, "ann")
    for n in range(20):
        content = f"post {n}: the cache stores this feed page compressed, once, for everyone"
        assert (await client.post("/api/posts", json={"content": content},
                                  headers=ann)).status == 201
    expected = None
    etags = set()
    for accept, coding in (("gzip, deflate, br, zstd", "br"), ("gzip", "gzip"),
                           ("identity", None), ("gzip, br", "br")):
        async with client.stream("GET", "/api/posts",
                                 headers={"Accept-Encoding": accept}) as response:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
        if expected is None:
            assert response.headers["x-cache"] == "MISS"
            before = statements.count
        else:
            assert response.headers["x-cache"] == "HIT"
        assert response.headers.get("content-encoding") == coding
        assert response.headers["vary"] == "Accept-Encoding"
        assert response.headers["content-length"] == str(len(raw))
        body = (brotli.decompress(raw) if coding == "br" else
                gzip.decompress(raw) if coding == "gzip" else raw)
        if expected is None:
            expected = body
            assert len(orjson.loads(body)["items"]) == 20 and len(body) > 2048
        assert body == expected
        if coding == "br":
            assert len(raw) <= 0.35 * len(expected)
        etags.add((coding, response.headers["etag"]))
    assert statements.count == before, "a hit ran a query"
    assert len({etag for _, etag in etags}) == 3
    stored = app.ctx.cache.tiers.remote
    if stored is not None:
        url = app.ctx.cache.settings.redis_url
        raw_entry = redis.Redis.from_url(url).get(
            response_key(app.ctx.cache.settings.namespace, "/api/posts"))
        record = decode(raw_entry)
        assert record.encoding == "br" and brotli.decompress(record.body) == expected
