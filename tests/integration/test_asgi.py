"""``uvicorn asgi:app``: the service under an ASGI server, as a real process against a real
redis-server and the test database. The cache (with its hot tier and the subscriber that keeps
it coherent), the health routes and the metrics behave as under Sanic's own server, and the
process stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from pytest_redis.executor import RedisExecutor

from tests.app_process import launch
from tests.integration.api_support import register
from tests.server import Client

pytestmark = [pytest.mark.slow, pytest.mark.redis]

UVICORN = ("-m", "uvicorn", "asgi:app", "--host", "127.0.0.1", "--port", "{port}")
STOP_SECONDS = 10


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called ``name`` in a Prometheus exposition, by their sorted labels."""
    return {tuple(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name}


def commands(admin: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in admin.info("commandstats").items()}


async def test_uvicorn_serves_the_cached_service_with_health_and_metrics_and_stops_cleanly(
        tmp_path: Path, database_url: str, redis_server: RedisExecutor) -> None:
    env = {"DATABASE_URL": database_url,
           "REDIS_URL": f"redis://{redis_server.host}:{redis_server.port}/0",
           "SECRET_KEY": "test-secret-key-0123456789abcdef",
           "CACHE_NAMESPACE": f"uv{os.getpid()}{tmp_path.name[-6:]}", "LOG_LEVEL": "INFO"}
    admin = redis.Redis(host=redis_server.host, port=redis_server.port)
    with launch(UVICORN, tmp_path, "uvicorn", started="Application startup complete",
                ready=("hot tier serves",), **env) as server:
        async with Client(base_url=server.base, timeout=10) as client:
            async def database_statements() -> float:
                text = (await client.get("/metrics")).text
                return sum(samples(text, "db_query_duration_seconds_count").values())

            miss = await client.get("/api/posts")
            assert (miss.status, miss.headers["x-cache"]) == (200, "MISS")
            statements, before = await database_statements(), commands(admin)
            hit = await client.get("/api/posts")
            assert (hit.status, hit.headers["x-cache"]) == (200, "HIT")
            assert hit.content == miss.content
            # Served by the hot tier: no handler, no database statement, no Redis command.
            assert await database_statements() == statements
            assert {name: n - before.get(name, 0) for name, n in commands(admin).items()
                    if name not in ("info", "ping")} == {
                name: 0 for name in before if name not in ("info", "ping")}

            user, auth = await register(client, "ann")
            created = await client.post("/api/posts", json={"content": "under uvicorn"},
                                        headers=auth)
            assert created.status == 201, created.text
            after = await client.get("/api/posts")
            assert after.headers["x-cache"] == "MISS"
            assert [post["content"] for post in after.json["items"]] == ["under uvicorn"]
            assert (await client.get("/api/posts")).headers["x-cache"] == "HIT"

            health = await client.get("/health")
            assert (health.status, health.json) == (200, {"status": "ok"})
            detailed = (await client.get("/health/detailed")).json
            assert detailed["status"] == "ok" and detailed["database"]["status"] == "ok"
            assert detailed["cache"]["status"] == "healthy", detailed
            cache = (await client.get("/health/cache")).json
            assert cache["status"] == "healthy" and cache["backend"] == "redis"
            assert cache["breaker"]["state"] == "closed"
            assert cache["stats"]["hot"]["healthy"] is True
            assert cache["stats"]["hits"] == 2 and cache["stats"]["misses"] == 2, cache
            text = (await client.get("/metrics")).text
        lookups = samples(text, "cache_lookups_total")
        assert lookups[(("outcome", "hit"), ("route", "/api/posts"))] == 2
        assert lookups[(("outcome", "miss"), ("route", "/api/posts"))] == 2
        requests = samples(text, "http_requests_total")
        assert requests[(("method", "POST"), ("route", "/api/posts"), ("status", "201"))] == 1
        assert commands(admin).get("subscribe", 0) >= 1  # the hot tier's subscriber

        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"uvicorn still running {STOP_SECONDS} s after SIGTERM")
    admin.close()
    log = server.log_path.read_text()
    # uvicorn re-raises the signal it handled once its shut-down is done (0.29 and later).
    assert code in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log and "Finished server process" in log, log
    assert "Traceback" not in log and "ERROR" not in log, log
    assert "Tortoise-ORM shutdown" in log
