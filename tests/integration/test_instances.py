"""Two real service instances (``python app.py``, 2 workers each) on one Redis and one
PostgreSQL, as users deploy it behind a load balancer: a write acknowledged by one instance is
never followed, 5 ms later, by a read of the old content from any worker of the other, while
both serve hits from their hot tiers."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_redis.executor import RedisExecutor

from tests.app_process import service

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres]


def instance(tmp_path: Path, name: str, **env: str) -> Any:
    """``python app.py`` with 2 workers, each subscribed to the invalidation channel."""
    return service(tmp_path, name, ready=("hot tier serves",), WORKERS="2",
                   SECRET_KEY="test-secret-key-0123456789abcdef", **env)


async def test_two_instances_with_two_workers_each_never_serve_pre_write_data(
        tmp_path: Path, postgres_url: str, redis_server: RedisExecutor) -> None:
    from tests.conftest import _truncate_postgres

    await _truncate_postgres(postgres_url)
    env = {"DATABASE_URL": postgres_url,
           "REDIS_URL": f"redis://{redis_server.host}:{redis_server.port}/0",
           "CACHE_NAMESPACE": f"inst{os.getpid()}", "LOG_LEVEL": "INFO"}
    with instance(tmp_path, "a", **env) as (a_url, _), \
            instance(tmp_path, "b", **env) as (b_url, _):
        # Several connections each, so both workers of each instance serve.
        limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
        async with httpx.AsyncClient(base_url=a_url, timeout=10) as a, \
                httpx.AsyncClient(base_url=b_url, timeout=10, limits=limits) as b:
            token = (await a.post("/api/auth/register", json={
                "username": "ann", "email": "ann@example.com",
                "password": "password123"})).json()["token"]
            auth = {"Authorization": f"Bearer {token}"}
            post_id = (await a.post("/api/posts", json={"content": "v0"},
                                    headers=auth)).json()["id"]
            path = f"/api/posts/{post_id}"
            stale = []
            for version in range(1, 31):
                for _ in range(3):  # warm: both of B's workers hot on both routes
                    await asyncio.gather(*(b.get(url) for url in (path, "/api/posts") * 4))
                written = await a.patch(path, json={"content": f"v{version}"}, headers=auth)
                assert written.status_code == 200
                await asyncio.sleep(0.005)
                reads = await asyncio.gather(*(b.get(url) for url in (path, "/api/posts") * 4))
                for response in reads:
                    body = response.json()
                    content = body["content"] if "content" in body else \
                        body["items"][0]["content"]
                    if content != f"v{version}":
                        stale.append((version, str(response.url), content))
            assert stale == []
            hot_hits = 0
            for _ in range(20):  # /health/cache answers per worker: ask until both answered
                stats = (await b.get("/health/cache")).json()["stats"]
                hot_hits = max(hot_hits, stats["hot"]["hits"])
            assert hot_hits > 50, "B's workers really served from their hot tiers"
