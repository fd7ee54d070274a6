"""What an anonymous client can do to the cache: nothing it sends may clear it.

Found by trying the service as a hostile client: a write whose body is cut short (announce
100 bytes, send 5, hang up) was answered 503 and its invalidation rule ran anyway; the rule
read the signed-in user, which was never set, raised, and the fallback bumped the global epoch:
every entry of every route on every host gone, one request a second enough to keep the hit
rate at zero. The same happened on a 5xx before authentication.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pytest_redis.executor import RedisExecutor

import handlers.auth
import handlers.posts
from app import create_app
from settings import Settings
from tests.integration.api_support import register
from tests.server import Client, running

CACHED = ("/api/posts", "/api/jobs", "/api/jobs/stats", "/api/users/list")
BACKENDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=BACKENDS)
async def service(request: pytest.FixtureRequest,
                  make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[Client, Any]]:
    redis_url = None
    if request.param == "redis":
        proc: RedisExecutor = request.getfixturevalue("redis_server")
        redis_url = f"redis://{proc.host}:{proc.port}/0"
    app = create_app(make_settings(redis_url=redis_url))
    async with running(app) as client:
        yield client, app


async def _warm(client: Client) -> None:
    for path in CACHED:
        await client.get(path)
        assert (await client.get(path)).headers["x-cache"] == "HIT", path


async def _all_still_hit(client: Client) -> None:
    # STALE proves it as well as HIT: an entry is served stale only while its generations are
    # current, so an emptied cache answers MISS. (A slow run outlives the feed's TTL.)
    for path in CACHED:
        assert (await client.get(path)).headers["x-cache"] in ("HIT", "STALE"), path


async def _cut_body(port: int, path: str, headers: str = "") -> None:
    """Announce a 100-byte JSON body, send 5 bytes of it, hang up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: 100\r\n{headers}\r\n{{\"con".encode())
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def _processed(client: Client, method: str, route: str, status: str,
                     count: int) -> None:
    """Wait until the service has answered ``count`` such requests (its own metrics)."""
    needle = (f'http_requests_total{{method="{method}",route="{route}",status="{status}"}} '
              f"{float(count)}")
    for _ in range(100):
        if needle in (await client.get("/metrics")).text:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the service never answered {count} x {method} {route} {status}")


@pytest.mark.parametrize("path", ["/api/posts", "/api/jobs", "/api/auth/register"])
async def test_a_body_cut_short_clears_nothing(service: tuple[Client, Any], path: str) -> None:
    client, app = service
    user, auth = await register(client, "ann")
    await _warm(client)
    cache = app.ctx.cache
    before = cache.stats()["invalidations"]
    port = int(str(client.base_url).rsplit(":", 1)[1])
    for _ in range(3):  # signed in or not, it never reached the handler
        await _cut_body(port, path)
        await _cut_body(port, path, f"Authorization: {auth['Authorization']}\r\n")
    await _processed(client, "POST", path, "503", 6)
    assert cache.stats()["invalidations"] == before
    await _all_still_hit(client)


async def test_a_5xx_before_authentication_clears_nothing(
        service: tuple[Client, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    client, app = service
    _, auth = await register(client, "ann")
    await _warm(client)
    before = app.ctx.cache.stats()["invalidations"]

    async def database_down(**_: Any) -> Any:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(handlers.auth.User, "get_or_none", database_down)
    for path, body in (("/api/posts", {"content": "x"}),
                       ("/api/jobs", {"title": "t", "company": "c", "location": "l"})):
        response = await client.post(path, json=body, headers=auth)
        assert response.status == 500
    for method, path in (("PATCH", "/api/posts/1"), ("DELETE", "/api/jobs/1"),
                         ("POST", "/api/users/1/follow")):
        assert (await client.request(method, path, json={"content": "x"},
                                     headers=auth)).status == 500
    monkeypatch.undo()
    assert app.ctx.cache.stats()["invalidations"] == before
    await _all_still_hit(client)


async def test_a_5xx_after_the_commit_still_clears(
        service: tuple[Client, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The other half: a write that may have committed is never followed by a stale read."""
    client, app = service
    _, auth = await register(client, "ann")
    await _warm(client)

    def broken(*_: Any) -> Any:
        raise RuntimeError("failed after the INSERT committed")

    monkeypatch.setattr(handlers.posts, "post_out", broken)
    failed = await client.post("/api/posts", json={"content": "committed anyway"}, headers=auth)
    assert failed.status == 500
    monkeypatch.undo()
    feed = await client.get("/api/posts")
    assert feed.headers["x-cache"] == "MISS"
    assert [item["content"] for item in feed.json["items"]] == ["committed anyway"]
    # Only what the write changes was cleared, not the whole cache.
    assert (await client.get("/api/jobs")).headers["x-cache"] == "HIT"


async def test_huge_query_values_cannot_pin_memory_or_amplify(
        service: tuple[Client, Any]) -> None:
    """4,096 requests with 8 KB ``author`` values pinned ~65 MiB per worker in the tag memos
    (bounded by count only), because the key and tags are built before the handler rejects
    the value; a colon every other byte also expanded one tag into 4,000 prefixes."""
    from middleware import keys

    client, app = service
    await _warm(client)
    for i in range(60):
        # Up to ~7.5 KB on the wire, under Sanic's 8 KB header limit ("a:" is sent "a%3A").
        value = f"{i}" + ("a:" * 1800 if i % 2 else "a" * 7000)
        response = await client.get("/api/posts", params={"author": value})
        assert response.status == 400  # the handler rejects it...
        assert response.headers["x-cache"] == "BYPASS"  # ...and the cache stayed out of it
    for i in range(600):  # below the tag bound, above the handler's: distinct, memoised
        response = await client.get("/api/posts", params={"author": f"{i:0>200}"})
        assert response.status == 400
    cache = app.ctx.cache
    assert keys._EXPANDED.size <= 1 << 20  # noqa: SLF001
    assert cache.generations._keys.size <= 1 << 20  # noqa: SLF001
    await _all_still_hit(client)
