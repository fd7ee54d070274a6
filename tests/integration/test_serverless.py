"""``serverless:handler`` invoked as AWS Lambda invokes it (``tests.lambda_runtime``: one
thread, the module imported once, API Gateway v2 events one at a time) against a real
redis-server and the test database: the feed answers MISS then HIT across invocations, a warm
container keeps its connections, a write invalidates, and each invocation's Redis commands are
what upstash.md quotes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from pytest_redis.executor import RedisExecutor

from settings import SettingsError
from tests.lambda_runtime import Container, container

pytestmark = pytest.mark.redis

SERVERLESS = Path(__file__).resolve().parents[2] / "serverless.py"
_SERVICE_PREFIXES = ("REDIS_", "CACHE_", "PROMETHEUS_", "DATABASE_", "SECRET_", "UPSTASH_")


@dataclass(frozen=True)
class CacheServer:
    """A cache server the function reaches: the variables that select it, the backend name
    ``/health/cache`` reports, the redis-server that executes its commands (counted there),
    and how to close the function's idle connection from the server's side."""

    env: dict[str, str]
    backend: str
    redis: RedisExecutor
    close_idle_connections: Callable[[], int]


@pytest.fixture(params=["redis"])
def cache_server(request: pytest.FixtureRequest, redis_server: RedisExecutor) -> CacheServer:
    """Each backend a serverless deployment can use; the REST stand-in joins this list."""
    def kill_clients() -> int:
        with redis.Redis(host=redis_server.host, port=redis_server.port) as admin:
            return int(admin.client_kill_filter(_type="normal", skipme=True))

    return CacheServer({"REDIS_URL": f"redis://{redis_server.host}:{redis_server.port}/0"},
                       "redis", redis_server, kill_clients)


@pytest.fixture
def function_env(monkeypatch: pytest.MonkeyPatch, database_url: str,
                 cache_server: CacheServer) -> Iterator[redis.Redis]:
    """The function's environment (only its own settings); yields an admin client of the
    redis-server behind the cache."""
    for key in list(os.environ):
        if key.startswith(_SERVICE_PREFIXES):
            monkeypatch.delenv(key)
    env = {"DATABASE_URL": database_url, "SECRET_KEY": "test-secret-key-0123456789abcdef",
           "CACHE_NAMESPACE": f"fn{uuid.uuid4().hex[:8]}", **cache_server.env}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    admin = redis.Redis(host=cache_server.redis.host, port=cache_server.redis.port)
    yield admin
    admin.close()


def commands(admin: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in admin.info("commandstats").items()}


def counted(admin: redis.Redis, fn: Container, method: str, target: str,
            **kwargs: object) -> tuple[str, dict[str, int]]:
    """One invocation: its ``X-Cache`` and the Redis commands it cost (the admin's own
    ``INFO`` calls left out)."""
    before = commands(admin)
    answer = fn.invoke(method, target, **kwargs)  # type: ignore[arg-type]
    assert answer.status < 400, answer.body
    after = commands(admin)
    spent = {name: n - before.get(name, 0) for name, n in after.items()
             if n != before.get(name, 0)}
    spent["info"] = spent.get("info", 0) - 1
    return answer.headers.get("x-cache", ""), {k: v for k, v in spent.items() if v}


def test_the_function_refuses_to_start_without_a_secret_key(
        function_env: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each container would sign with a random key of its own: tokens would fail at random."""
    monkeypatch.delenv("SECRET_KEY")
    with pytest.raises(SettingsError, match="SECRET_KEY must be set"):
        with container(SERVERLESS):
            pass


def test_two_invocations_answer_the_feed_miss_then_hit(function_env: redis.Redis) -> None:
    with container(SERVERLESS) as fn:
        first = fn.invoke("GET", "/api/posts?limit=5")
        second = fn.invoke("GET", "/api/posts?limit=5")
    assert (first.status, first.headers["x-cache"]) == (200, "MISS")
    assert (second.status, second.headers["x-cache"]) == (200, "HIT")
    assert second.body == first.body
    assert first.json() == {"items": [], "next_cursor": None}


def test_a_warm_container_keeps_its_connections_and_a_write_invalidates(
        function_env: redis.Redis, cache_server: CacheServer) -> None:
    admin = function_env
    with container(SERVERLESS) as fn:
        assert fn.invoke("GET", "/api/posts").headers["x-cache"] == "MISS"  # starts the app
        connections = admin.info("stats")["total_connections_received"]
        signed_up = fn.invoke("POST", "/api/auth/register", body={
            "username": "ann", "email": "ann@example.com", "password": "password123"})
        assert signed_up.status == 201, signed_up.body
        auth = {"Authorization": f"Bearer {signed_up.json()['token']}"}
        created = fn.invoke("POST", "/api/posts", headers=auth, body={"content": "from lambda"})
        assert created.status == 201, created.body
        after = fn.invoke("GET", "/api/posts")
        assert after.headers["x-cache"] == "MISS"
        assert [post["content"] for post in after.json()["items"]] == ["from lambda"]
        assert fn.invoke("GET", "/api/posts").headers["x-cache"] == "HIT"
        health = fn.invoke("GET", "/health/cache").json()
        metrics = fn.invoke("GET", "/metrics").body.decode()
        # One Redis connection for the container's life: the app started once, not per
        # invocation (Mangum's default lifespan handling would reconnect every time).
        assert admin.info("stats")["total_connections_received"] == connections
    assert health["backend"] == cache_server.backend and health["breaker"]["state"] == "closed"
    assert health["stats"]["hits"] == 1 and health["stats"]["hot"] is None, health
    assert 'cache_lookups_total{outcome="hit",route="/api/posts"} 1.0' in metrics
    assert 'cache_lookups_total{outcome="miss",route="/api/posts"} 2.0' in metrics


def test_a_thawed_container_reconnects_before_its_lookup_when_redis_closed_the_connection(
        function_env: redis.Redis, cache_server: CacheServer) -> None:
    """Between invocations the process is frozen; Redis (``timeout``), a NAT or a proxy may
    close the idle connection meanwhile. The next invocation must notice before it sends its
    lookup, not be served uncached (``X-Cache: ERROR``)."""
    with container(SERVERLESS) as fn:
        assert fn.invoke("GET", "/api/posts").headers["x-cache"] == "MISS"
        assert fn.invoke("GET", "/api/posts").headers["x-cache"] == "HIT"
        assert cache_server.close_idle_connections() >= 1
        assert fn.invoke("GET", "/api/posts").headers["x-cache"] == "HIT"


def test_the_redis_commands_of_each_kind_of_invocation(function_env: redis.Redis) -> None:
    """The command budget upstash.md quotes, counted by the redis-server itself (commands a
    script runs are counted too: one ``EVAL`` is one round trip)."""
    admin = function_env
    with container(SERVERLESS) as fn:
        # The container's first invocation: connect (INFO and the restart check, which finds
        # this new namespace empty and sets its epoch), the start-up PING, then a lookup
        # whose counters do not exist yet (one script creates them) and the store.
        assert counted(admin, fn, "GET", "/api/jobs/stats") == ("MISS", {
            "info": 1, "eval": 2, "get": 1, "set": 6, "publish": 1, "ping": 1, "mget": 2})
        # A route whose tag was never seen: one script creates its counter, then the store.
        assert counted(admin, fn, "GET", "/api/jobs") == ("MISS", {
            "mget": 2, "eval": 1, "set": 4})
        assert counted(admin, fn, "GET", "/api/jobs") == ("HIT", {"mget": 1})
        token = fn.invoke("POST", "/api/auth/register", body={
            "username": "bob", "email": "bob@example.com", "password": "password123"}
        ).json()["token"]
        # A write: one script bumps its two tags and publishes them.
        assert counted(admin, fn, "POST", "/api/jobs", headers={
            "Authorization": f"Bearer {token}"}, body={
            "title": "Engineer", "company": "Acme", "location": "Berlin",
            "description": "Builds things."}) == ("", {
                "eval": 1, "set": 2, "incr": 2, "publish": 1})
        assert counted(admin, fn, "GET", "/api/jobs") == ("MISS", {"mget": 1, "set": 1})
        assert counted(admin, fn, "GET", "/api/jobs") == ("HIT", {"mget": 1})
    # A new container of a running deployment: connect (INFO, the restart check finds the
    # incarnation current), the start-up PING, then a plain hit.
    with container(SERVERLESS) as fn:
        assert counted(admin, fn, "GET", "/api/jobs") == ("HIT", {
            "info": 1, "eval": 1, "get": 1, "ping": 1, "mget": 1})
