"""Generations that survive Redis forgetting them, over HTTP with the real service.

A hostile-user review reproduced both with a real redis-server:

- *Restarted empty, with a slow miss in flight*: the miss read the generations before the
  restart and stored its record after it; the counters then started again at 0, so the next
  write's INCR brought ``post:<id>`` back to the value the record carried, and the record
  served pre-write content for the rest of its TTL.
- *Restarted from an older RDB*: counters and entries come back as they were at the snapshot,
  although writes after it had invalidated those entries.
- *Evicted counters* (``allkeys-lru``, ``maxmemory`` reached under a key flood): the same as
  a counter restarted at 0.

The slow miss is held by a PostgreSQL lock: ``LOCK TABLE posts`` in another session makes the
handler's query wait after the cache has read the generations.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from app import create_app
from settings import Settings
from tests.integration.api_support import register
from tests.server import Client, free_port, running

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


class RedisServer:
    """A redis-server this test owns: stopped cleanly, killed, restarted on the same port."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.port = free_port()
        self.directory = directory
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), "--dbfilename", "dump.rdb",
             *self.extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                out = subprocess.run(["redis-cli", "-p", str(self.port), "ping"],
                                     capture_output=True, text=True, timeout=2).stdout
                if "PONG" in out:
                    return
            except subprocess.TimeoutExpired:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: nothing is saved; a restart loads whatever dump.rdb holds."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def client(self) -> Redis:
        return Redis(host="127.0.0.1", port=self.port)


@pytest.fixture
def redis_server_owned(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


@pytest.fixture
async def pg_service(postgres_url: str, redis_server_owned: RedisServer,
                     ) -> AsyncIterator[tuple[Client, Any, str]]:
    from tests.conftest import _truncate_postgres

    await _truncate_postgres(postgres_url)
    settings = Settings(database_url=postgres_url, redis_url=redis_server_owned.url,
                        secret_key="test-secret-key-0123456789abcdef")
    app = create_app(settings)
    async with running(app) as client:
        yield client, app, postgres_url


async def _lock_posts(postgres_url: str) -> tuple[asyncpg.Connection, Any]:
    """Hold ``LOCK TABLE posts`` in another session: the handler's query waits for it."""
    conn = await asyncpg.connect(postgres_url.replace("postgres://", "postgresql://", 1))
    tx = conn.transaction()
    await tx.start()
    await conn.execute("LOCK TABLE posts IN ACCESS EXCLUSIVE MODE")
    return conn, tx


async def _slow_miss_across(client: Client, postgres_url: str, path: str,
                            restart: Callable[[], None]) -> Any:
    """A miss reads the generations, its query waits on a lock while ``restart`` runs, then
    it stores what it read (the content from before the restart)."""
    conn, tx = await _lock_posts(postgres_url)
    try:
        slow = asyncio.create_task(client.get(path))
        await asyncio.sleep(0.5)  # the lookup (MGET) ran; the handler waits for the lock
        assert not slow.done()
        restart()
    finally:
        await tx.rollback()
        await conn.close()
    return await slow


async def _edit(client: Client, auth: dict[str, str], post_id: int, content: str) -> None:
    response = await client.patch(f"/api/posts/{post_id}", json={"content": content},
                                  headers=auth)
    assert response.status == 200, response.text


async def test_restart_empty_with_a_slow_miss_in_flight_serves_no_pre_write_data(
        pg_service: tuple[Client, Any, str], redis_server_owned: RedisServer) -> None:
    client, app, postgres_url = pg_service
    _, auth = await register(client, "ann")
    post_id = (await client.post("/api/posts", json={"content": "v0"}, headers=auth)).json["id"]
    path = f"/api/posts/{post_id}"
    assert (await client.get(path)).json["content"] == "v0"
    await _edit(client, auth, post_id, "v1")  # post:<id> bumped once: the entry is stale

    def restart_empty() -> None:
        redis_server_owned.kill()
        redis_server_owned.start()  # no dump.rdb: empty

    # The miss reads post:<id>'s generation (one bump) before the restart, stores v1 after.
    slow = await _slow_miss_across(client, postgres_url, path, restart_empty)
    assert slow.status == 200 and slow.json["content"] == "v1"
    # One bump of a counter that restarted at 0 would meet the value v1 was stored under.
    await _edit(client, auth, post_id, "v2")  # acknowledged: nobody may read v1 any more
    for _ in range(6):
        response = await client.get(path)
        assert response.status == 200 and response.json["content"] == "v2", response.headers
    assert response.headers["x-cache"] == "HIT"  # and the cache serves again


async def test_restart_from_an_older_rdb_serves_no_pre_write_data(
        pg_service: tuple[Client, Any, str], redis_server_owned: RedisServer) -> None:
    client, app, postgres_url = pg_service
    _, auth = await register(client, "ann")
    post_id = (await client.post("/api/posts", json={"content": "v0"}, headers=auth)).json["id"]
    path = f"/api/posts/{post_id}"
    for _ in range(2):
        assert (await client.get(path)).json["content"] == "v0"
    feed = (await client.get("/api/posts")).json
    assert [item["content"] for item in feed["items"]] == ["v0"]
    raw = redis_server_owned.client()
    await raw.save()  # the snapshot holds the v0 entries and the counters that match them
    await raw.aclose()
    await _edit(client, auth, post_id, "v1")  # acknowledged after the snapshot
    assert (await client.get(path)).json["content"] == "v1"

    def crash_and_restore() -> None:
        redis_server_owned.kill()
        redis_server_owned.start()  # loads the older dump.rdb

    slow = await _slow_miss_across(client, postgres_url, "/api/posts", crash_and_restore)
    assert [item["content"] for item in slow.json["items"]] == ["v1"]
    raw = redis_server_owned.client()
    assert await raw.dbsize() > 0  # the old entries really came back
    await raw.aclose()
    for _ in range(4):
        assert (await client.get(path)).json["content"] == "v1"
        assert [i["content"] for i in (await client.get("/api/posts")).json["items"]] == ["v1"]
    assert app.ctx.cache.tiers.remote.incarnation.resets >= 1


async def test_an_evicted_counter_never_lets_an_older_entry_match(
        pg_service: tuple[Client, Any, str], redis_server_owned: RedisServer) -> None:
    """What ``allkeys-lru`` does to one counter, deterministically: it disappears while the
    entry stored under its value survives; the next write must not bring it back there."""
    client, app, _ = pg_service
    _, auth = await register(client, "ann")
    post_id = (await client.post("/api/posts", json={"content": "v0"}, headers=auth)).json["id"]
    path = f"/api/posts/{post_id}"
    await _edit(client, auth, post_id, "v1")
    assert (await client.get(path)).json["content"] == "v1"  # stored under post:<id>'s value
    raw = redis_server_owned.client()
    namespace = app.ctx.cache.settings.namespace
    assert await raw.delete(f"{namespace}:gen:post:{post_id}") == 1  # evicted
    await raw.aclose()
    await _edit(client, auth, post_id, "v2")
    for _ in range(4):
        assert (await client.get(path)).json["content"] == "v2"


async def test_allkeys_lru_under_a_key_flood_serves_no_stale_read(
        pg_service: tuple[Client, Any, str], redis_server_owned: RedisServer) -> None:
    client, app, _ = pg_service
    raw = redis_server_owned.client()
    await raw.config_set("maxmemory", 4 * 1024 * 1024)
    await raw.config_set("maxmemory-policy", "allkeys-lru")
    _, auth = await register(client, "ann")
    ids = [(await client.post("/api/posts", json={"content": f"p{i}:0"},
                              headers=auth)).json["id"] for i in range(8)]
    version = {post_id: 0 for post_id in ids}

    async def flood() -> None:
        # Unrelated keys pushing the cache's own entries and counters out of memory.
        payload = b"x" * 2048
        for batch in range(60):
            async with raw.pipeline(transaction=False) as pipe:
                for i in range(200):
                    pipe.set(f"flood:{batch}:{i}", payload)
                await pipe.execute()
            await asyncio.sleep(0)

    flooding = asyncio.create_task(flood())
    stale = []
    rounds = 0
    while not flooding.done() or rounds < 10:
        rounds += 1
        for n, post_id in enumerate(ids):
            if (rounds + n) % 3 == 0:
                version[post_id] += 1
                await _edit(client, auth, post_id, f"p{n}:{version[post_id]}")
            response = await client.get(f"/api/posts/{post_id}")
            assert response.status == 200
            if response.json["content"] != f"p{n}:{version[post_id]}":
                stale.append((post_id, response.json["content"], version[post_id]))
    await flooding
    info = await raw.info("stats")
    await raw.aclose()
    assert info["evicted_keys"] > 0, "the flood must really evict"
    assert stale == []


def test_redis_server_is_on_the_path() -> None:
    assert subprocess.run(["redis-server", "--version"], capture_output=True).returncode == 0
    assert os.access("/usr/bin/redis-cli", os.X_OK) or subprocess.run(
        ["redis-cli", "--version"], capture_output=True).returncode == 0
