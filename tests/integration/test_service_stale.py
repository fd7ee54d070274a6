"""The service's stale windows with PostgreSQL really stopped (``cache_rules``).

A throwaway PostgreSQL cluster (``pg_ctl``, as ``test_database_ssl``) is stopped in the
middle of the test, with a real redis-server behind the cache and an injected wall clock.
Both halves of the promise: current entries past their TTL are answered (at once within
``stale-while-revalidate``, instead of the error within ``stale-if-error``), and the entry a
write invalidated before the outage is never answered, stale or not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import http_sf
import pytest

from app import create_app
from cache_rules import (
    FEED_TTL, ITEM_TTL, MAX_STALE_WHILE_REVALIDATE, ME_TTL, STALE_IF_ERROR,
)
from settings import Settings
from tests.integration.api_support import register
from tests.server import free_port, running

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

_PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), default=None,
              key=lambda path: int(path.parent.name))


def _run(*command: str) -> None:
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        command = ("runuser", "-u", "postgres", "--", *command)
    subprocess.run(command, check=True, timeout=120, stdout=subprocess.DEVNULL)


class Cluster:
    """A PostgreSQL cluster of this test's own, which it may stop and start."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.running = False

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run(str(_PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "log"),
             "-w", "-o", options, "start")
        self.running = True

    def stop(self) -> None:
        _run(str(_PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.running = False


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if _PG_BIN is None:
        pytest.fail("PostgreSQL server binaries not found under /usr/lib/postgresql")
    directory = Path(tempfile.mkdtemp(prefix="test-pg-stale."))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    cluster = Cluster(directory)
    try:
        _run(str(_PG_BIN / "initdb"), "-D", str(cluster.data), "-U", "postgres", "--auth=trust")
        cluster.start()
        yield cluster
    finally:
        if cluster.running:
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


class Clock:
    def __init__(self) -> None:
        self.now = 2_000_000.0

    def __call__(self) -> float:
        return self.now


def cache_status(response: Any) -> dict[str, Any]:
    members = http_sf.parse(response.headers["cache-status"].encode(), tltype="list")
    assert len(members) == 1 and str(members[0][0]) == "response-cache"
    return dict(members[0][1])


async def test_postgres_stopped_serves_current_stale_entries_and_never_invalidated_ones(
        cluster: Cluster, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    redis = request.getfixturevalue("redis_server")
    monkeypatch.setenv("CACHE_NAMESPACE", f"stale{uuid.uuid4().hex[:8]}")
    settings = Settings(database_url=cluster.url, redis_url=f"redis://{redis.host}:{redis.port}/0",
                        secret_key="test-secret-key-0123456789abcdef",
                        database_retry_seconds=0)
    app = create_app(settings)
    clock = app.ctx.cache.clock = Clock()
    async with running(app) as client:
        _, auth = await register(client, "ann")
        kept = (await client.post("/api/posts", json={"content": "kept v0"},
                                  headers=auth)).json["id"]
        edited = (await client.post("/api/posts", json={"content": "edited v0"},
                                    headers=auth)).json["id"]
        feed = "/api/posts?limit=10"
        for path in (f"/api/posts/{kept}", f"/api/posts/{edited}"):
            assert (await client.get(path)).headers["x-cache"] == "MISS"
        # A write clears the edited post (and the feed); its old entry is still in Redis.
        assert (await client.patch(f"/api/posts/{edited}", json={"content": "edited v1"},
                                   headers=auth)).status == 200
        stored_feed = await client.get(feed)  # the feed is read again: current
        assert stored_feed.headers["x-cache"] == "MISS"

        cluster.stop()

        # Within stale-while-revalidate: answered at once; the background refresh fails.
        clock.now += ITEM_TTL + 10
        stale = await client.get(f"/api/posts/{kept}")
        assert stale.status == 200 and stale.json["content"] == "kept v0"
        assert stale.headers["x-cache"] == "STALE"
        assert cache_status(stale) == {"hit": True, "ttl": -10}
        invalidated = await client.get(f"/api/posts/{edited}")
        assert invalidated.status >= 500 and "edited v0" not in invalidated.text
        assert invalidated.headers["x-cache"] == "MISS"
        await app.ctx.cache_hooks.refreshes.join()
        assert app.ctx.cache.stats()["refresh_failures"] == 1

        # Past stale-while-revalidate, within stale-if-error: the handler fails (the database
        # is down), the current entry answers instead; the invalidated one still does not.
        clock.now += MAX_STALE_WHILE_REVALIDATE
        assert FEED_TTL + MAX_STALE_WHILE_REVALIDATE + 10 < FEED_TTL + STALE_IF_ERROR
        for path, content in ((f"/api/posts/{kept}", "kept v0"), (feed, "edited v1")):
            rescued = await client.get(path)
            assert rescued.status == 200, rescued.text
            assert content in rescued.text and "edited v0" not in rescued.text
            assert rescued.headers["x-cache"] == "STALE"
            assert rescued.headers["etag"] and rescued.headers["cache-control"] == "no-cache"
            status = cache_status(rescued)
            assert status["fwd"] == http_sf.Token("stale") and status["fwd-status"] >= 500
            assert status["ttl"] < 0
        invalidated = await client.get(f"/api/posts/{edited}")
        assert invalidated.status >= 500 and "edited v0" not in invalidated.text
        assert app.ctx.cache.stats()["stale_on_error"] == 2

        # Past every window: the error is the answer.
        clock.now += STALE_IF_ERROR
        assert (await client.get(f"/api/posts/{kept}")).status >= 500

        cluster.start()
        back = await client.get(f"/api/posts/{edited}")
        assert back.status == 200 and back.json["content"] == "edited v1"


async def test_a_stale_entry_is_refreshed_in_the_background_by_the_real_handler(
        postgres_url: str, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The refresh runs the route's handler (and its authentication decorator, for the
    per-user route) on a copy of the request, after the stale answer has left."""
    from tests.conftest import _truncate_postgres

    await _truncate_postgres(postgres_url)
    redis = request.getfixturevalue("redis_server")
    monkeypatch.setenv("CACHE_NAMESPACE", f"stale{uuid.uuid4().hex[:8]}")
    settings = Settings(database_url=postgres_url, redis_url=f"redis://{redis.host}:{redis.port}/0",
                        secret_key="test-secret-key-0123456789abcdef")
    app = create_app(settings)
    clock = app.ctx.cache.clock = Clock()
    async with running(app) as client:
        _, auth = await register(client, "ann")
        post = (await client.post("/api/posts", json={"content": "v0"}, headers=auth)).json
        for path, headers, ttl in ((f"/api/posts/{post['id']}", {}, ITEM_TTL),
                                   ("/api/auth/me", auth, ME_TTL)):
            assert (await client.get(path, headers=headers)).headers["x-cache"] == "MISS"
            clock.now += ttl + 1  # within the revalidate window
            stale = await client.get(path, headers=headers)
            assert stale.status == 200 and stale.headers["x-cache"] == "STALE", path
            await app.ctx.cache_hooks.refreshes.join()
            fresh = await client.get(path, headers=headers)
            assert fresh.headers["x-cache"] == "HIT", path
            assert cache_status(fresh)["ttl"] == ttl
        stats = app.ctx.cache.stats()
        assert (stats["refreshes"], stats["refresh_failures"]) == (2, 0)
