"""Concurrent misses on one key in two workers of a real ``python app.py`` run the handler once:
the second worker waits out the first one's lease and answers from its entry."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest
from pytest_redis.executor import RedisExecutor

from tests.app_process import service

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres]

CONNECTIONS = 16


def _stores(metrics: str, route: str) -> float:
    pattern = re.compile(r'^cache_stores_total\{route="%s"\} (\S+)$' % re.escape(route), re.M)
    return sum(float(value) for value in pattern.findall(metrics))


def _connections_per_worker(port: int) -> Counter[int]:
    """Established connections to ``port`` by the pid that holds them (``ss -tnp``)."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"sport = :{port}"],
                         capture_output=True, text=True, check=True).stdout
    return Counter(int(pid) for pid in re.findall(r"pid=(\d+)", out))


async def test_a_miss_in_two_workers_at_once_runs_the_handler_once(
        tmp_path: Path, postgres_url: str, redis_server: RedisExecutor) -> None:
    from tests.conftest import _truncate_postgres

    await _truncate_postgres(postgres_url)
    env = {"DATABASE_URL": postgres_url, "WORKERS": "2",
           "REDIS_URL": f"redis://{redis_server.host}:{redis_server.port}/0",
           "CACHE_NAMESPACE": f"leases{os.getpid()}",
           "SECRET_KEY": "test-secret-key-0123456789abcdef"}
    with service(tmp_path, "leases", ready=("hot tier serves",), **env) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        limits = httpx.Limits(max_connections=CONNECTIONS,
                              max_keepalive_connections=CONNECTIONS)
        async with httpx.AsyncClient(base_url=base, timeout=20, limits=limits) as client:
            token = (await client.post("/api/auth/register", json={
                "username": "ann", "email": "ann@example.com",
                "password": "password123"})).json()["token"]
            created = await client.post("/api/posts", json={"content": "hello"},
                                        headers={"Authorization": f"Bearer {token}"})
            assert created.status_code == 201
            before = _stores((await client.get("/metrics")).text, "/api/posts")
            # Hold the feed's query: every request below misses while the handler waits.
            conn = await asyncpg.connect(postgres_url.replace("postgres://", "postgresql://", 1))
            tx = conn.transaction()
            await tx.start()
            await conn.execute("LOCK TABLE posts IN ACCESS EXCLUSIVE MODE")
            try:
                reads = [asyncio.create_task(client.get("/api/posts"))
                         for _ in range(CONNECTIONS)]
                await asyncio.sleep(1.0)
                workers = _connections_per_worker(port)
                assert not any(read.done() for read in reads)
            finally:
                await tx.rollback()
                await conn.close()
            responses = await asyncio.gather(*reads)
            after = _stores((await client.get("/metrics")).text, "/api/posts")
    # The kernel spread the connections over both workers (SO_REUSEPORT hashing).
    assert len(workers) == 2, workers
    assert all(response.status_code == 200 for response in responses)
    assert len({response.content for response in responses}) == 1
    outcomes = Counter(response.headers["x-cache"] for response in responses)
    # One worker's first miss ran the handler; everyone else, in either worker, got its entry.
    assert outcomes == {"MISS": 1, "HIT": CONNECTIONS - 1}, outcomes
    assert after - before == 1
