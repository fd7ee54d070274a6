"""``warm.StartOnce``: one start-up per process, none of the shut-downs between requests,
a failed start-up cleaned up and retried, and the ``raw_path`` Mangum leaves out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from warm import StartOnce


class FakeApp:
    """An ASGI app that records its lifespan events and the requests it served."""

    def __init__(self, fail_starts: int = 0, raise_starts: int = 0) -> None:
        self.events: list[str] = []
        self.paths: list[bytes] = []
        self.fail_starts = fail_starts
        self.raise_starts = raise_starts

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    await asyncio.sleep(0)  # start-up takes a while
                    if self.raise_starts:
                        self.raise_starts -= 1
                        raise ConnectionRefusedError("no redis")
                    if self.fail_starts:
                        self.fail_starts -= 1
                        await send({"type": "lifespan.startup.failed", "message": "no db"})
                    else:
                        await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert "lifespan.startup" in self.events and self.events[-1] == "lifespan.startup"
        self.paths.append(scope["raw_path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def http(path: str = "/api/posts", raw_path: bytes | None = None) -> dict[str, Any]:
    return {"type": "http", "path": path, "raw_path": raw_path, "query_string": b""}


async def request(app: StartOnce, scope: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope or http(), receive, send)
    return sent


async def test_the_app_starts_on_the_first_request_and_stays_started() -> None:
    inner = FakeApp()
    app = StartOnce(inner)
    assert inner.events == [] and not app.started
    for _ in range(3):
        sent = await request(app)
        assert sent[0]["status"] == 200
    assert inner.events == ["lifespan.startup"] and app.started
    await app.stop()
    assert inner.events == ["lifespan.startup", "lifespan.shutdown"] and not app.started


async def test_concurrent_first_requests_start_the_app_once() -> None:
    inner = FakeApp()
    app = StartOnce(inner)
    await asyncio.gather(*(request(app) for _ in range(5)))
    assert inner.events == ["lifespan.startup"]
    assert len(inner.paths) == 5
    await app.stop()


async def test_a_failed_start_up_is_shut_down_and_the_next_request_tries_again() -> None:
    inner = FakeApp(fail_starts=1)
    app = StartOnce(inner)
    with pytest.raises(RuntimeError, match="no db"):
        await request(app)
    # What the failed attempt opened was closed (its shut-down listeners ran).
    assert inner.events == ["lifespan.startup", "lifespan.shutdown"] and not app.started
    assert (await request(app))[0]["status"] == 200
    assert inner.events == ["lifespan.startup", "lifespan.shutdown", "lifespan.startup"]
    await app.stop()


async def test_a_lifespan_that_raises_instead_of_answering_fails_the_request() -> None:
    inner = FakeApp(raise_starts=1)
    app = StartOnce(inner)
    with pytest.raises(RuntimeError, match="no redis"):
        await asyncio.wait_for(request(app), timeout=5)
    assert (await request(app))[0]["status"] == 200
    assert inner.events == ["lifespan.startup", "lifespan.startup"]
    await app.stop()


@pytest.mark.parametrize(("path", "raw_path", "expected"), [
    ("/api/posts", None, b"/api/posts"),
    ("/api/users/ann smith/é", None, b"/api/users/ann%20smith/%C3%A9"),
    ("/a/b;c=d:e@f", None, b"/a/b;c=d:e@f"),
    ("/api/posts", b"/api/%70osts", b"/api/%70osts"),  # a server's own raw_path is kept
])
async def test_a_missing_raw_path_is_the_path_percent_encoded(
        path: str, raw_path: bytes | None, expected: bytes) -> None:
    inner = FakeApp()
    app = StartOnce(inner)
    await request(app, http(path, raw_path))
    assert inner.paths == [expected]
    await app.stop()


async def test_a_platform_lifespan_starts_and_stops_it() -> None:
    inner = FakeApp()
    app = StartOnce(inner)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    replies: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        replies.append(message)

    await inbox.put({"type": "lifespan.startup"})
    await inbox.put({"type": "lifespan.shutdown"})
    await app({"type": "lifespan"}, inbox.get, send)
    assert [reply["type"] for reply in replies] == [
        "lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert inner.events == ["lifespan.startup", "lifespan.shutdown"]
