"""``serverless:handler`` invoked as AWS Lambda invokes it (``tests.lambda_runtime``: one
thread, the module imported once, API Gateway v2 events one at a time) against each cache a
function can use: a real redis-server over TCP (``REDIS_URL``), and the Upstash REST stand-in
(``tests.upstash_standin``) in front of one (``UPSTASH_REDIS_REST_URL``/``_TOKEN``, no
``REDIS_URL``), with the test database. The feed answers MISS then HIT across invocations, a
warm container keeps its connections, a thawed one recovers a connection closed while it was
frozen, a write invalidates, and each invocation's Redis commands (and HTTP requests over
REST) are what upstash.md quotes."""

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
from tests.upstash_standin import standin_in_thread

pytestmark = pytest.mark.redis

SERVERLESS = Path(__file__).resolve().parents[2] / "serverless.py"
_SERVICE_PREFIXES = ("REDIS_", "CACHE_", "PROMETHEUS_", "DATABASE_", "SECRET_", "UPSTASH_")


@dataclass(frozen=True)
class CacheServer:
    """A cache server the function reaches: the variables that select it, the backend name
    ``/health/cache`` reports, the redis-server that executes its commands (counted there),
    how to close the function's idle connections from the server's side, how many
    connections the server has accepted, and the HTTP requests it has received (``None``
    over TCP)."""

    env: dict[str, str]
    backend: str
    redis: RedisExecutor
    close_idle_connections: Callable[[], int]
    connections: Callable[[], int]
    http_requests: Callable[[], int] | None = None


@pytest.fixture(params=["redis", "rest"])
def cache_server(request: pytest.FixtureRequest,
                 redis_server: RedisExecutor) -> Iterator[CacheServer]:
    """Each backend a serverless deployment can use: Redis over TCP, and the Upstash REST
    protocol (the stand-in, on a loop of its own as a remote server would be)."""
    redis_url = f"redis://{redis_server.host}:{redis_server.port}/0"
    if request.param == "redis":
        # One admin connection for the test, opened now: counted once, never killed.
        with redis.Redis(host=redis_server.host, port=redis_server.port) as watcher:
            yield CacheServer(
                {"REDIS_URL": redis_url}, "redis", redis_server,
                lambda: int(watcher.client_kill_filter(_type="normal", skipme=True)),
                lambda: int(watcher.info("stats")["total_connections_received"]))
        return
    token = "fn-rest-token-7c2b41"
    with standin_in_thread(redis_url, token) as standin:
        yield CacheServer(
            {"UPSTASH_REDIS_REST_URL": standin.url, "UPSTASH_REDIS_REST_TOKEN": token},
            "upstash", redis_server, standin.close_idle_connections_threadsafe,
            lambda: standin.connections, lambda: standin.total_requests)


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


def counted(admin: redis.Redis, server: CacheServer, fn: Container, method: str, target: str,
            **kwargs: object) -> tuple[str, dict[str, int], int | None]:
    """One invocation: its ``X-Cache``, the Redis commands it cost (the admin's own ``INFO``
    calls left out) and, over REST, the HTTP requests it sent."""
    before, sent = commands(admin), server.http_requests() if server.http_requests else None
    answer = fn.invoke(method, target, **kwargs)  # type: ignore[arg-type]
    assert answer.status < 400, answer.body
    after = commands(admin)
    spent = {name: n - before.get(name, 0) for name, n in after.items()
             if n != before.get(name, 0)}
    spent["info"] = spent.get("info", 0) - 1
    requests = None if server.http_requests is None else server.http_requests() - sent
    return (answer.headers.get("x-cache", ""), {k: v for k, v in spent.items() if v},
            requests)


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
    with container(SERVERLESS) as fn:
        assert fn.invoke("GET", "/api/posts").headers["x-cache"] == "MISS"  # starts the app
        connections = cache_server.connections()
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
        # One connection (TCP to Redis, or keep-alive HTTP) for the container's life: the app
        # started once, not per invocation (Mangum's default lifespan handling would connect
        # again every time).
        assert cache_server.connections() == connections
    assert health["backend"] == cache_server.backend and health["breaker"]["state"] == "closed"
    assert health["stats"]["hits"] == 1 and health["stats"]["hot"] is None, health
    assert 'cache_lookups_total{outcome="hit",route="/api/posts"} 1.0' in metrics
    assert 'cache_lookups_total{outcome="miss",route="/api/posts"} 2.0' in metrics


def test_the_cache_is_chosen_from_the_functions_environment_with_the_hot_tier_off(
        function_env: redis.Redis, cache_server: CacheServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``serverless`` hands the app its own cache settings (hot tier off): the backend is
    still chosen from them (``REDIS_URL``, else the REST URL and token), and ``CACHE_LOCAL``
    cannot turn the hot tier back on."""
    monkeypatch.setenv("CACHE_LOCAL", "true")
    with container(SERVERLESS) as fn:
        assert fn.invoke("GET", "/api/posts").headers["x-cache"] == "MISS"
        cache = fn.module.app.app.ctx.cache
        assert cache.settings.local_tier is False and cache.hot is None
        assert cache.tiers.remote.name == cache_server.backend
        assert fn.invoke("GET", "/health/cache").json()["backend"] == cache_server.backend


def test_a_thawed_container_reconnects_before_its_lookup_when_redis_closed_the_connection(
        function_env: redis.Redis, cache_server: CacheServer) -> None:
    """Between invocations the process is frozen; Redis (``timeout``), the REST endpoint
    (its keep-alive timeout), a NAT or a proxy may close the idle connection meanwhile. The
    next invocation must connect again for its lookup, not be served uncached
    (``X-Cache: ERROR``)."""
    with container(SERVERLESS) as fn:
        assert fn.invoke("GET", "/api/posts").headers["x-cache"] == "MISS"
        assert fn.invoke("GET", "/api/posts").headers["x-cache"] == "HIT"
        connections = cache_server.connections()
        assert cache_server.close_idle_connections() >= 1
        assert fn.invoke("GET", "/api/posts").headers["x-cache"] == "HIT"
        assert cache_server.connections() == connections + 1


# Each invocation's cost, in Redis commands (counted by the redis-server: commands a script
# runs are counted too, one ``EVAL`` being one round trip) and, over REST, in HTTP requests
# (counted by the stand-in). Over TCP a connection starts with ``INFO`` and the restart check;
# over REST the check is one script (reading ``INFO`` itself) riding in the first request.
_JOB = {"title": "Engineer", "company": "Acme", "location": "Berlin",
        "description": "Builds things."}
_BUDGET: dict[str, list[tuple[str, dict[str, int], int | None]]] = {
    "redis": [
        # The container's first invocation: connect (INFO and the restart check, which finds
        # this new namespace empty and sets its epoch), the start-up PING, then a lookup
        # whose counters do not exist yet (one script creates them) and the store.
        ("MISS", {"info": 1, "eval": 2, "get": 1, "set": 6, "publish": 1, "ping": 1,
                  "mget": 2}, None),
        # A route whose tag was never seen: one script creates its counter, then the store.
        ("MISS", {"mget": 2, "eval": 1, "set": 4}, None),
        ("HIT", {"mget": 1}, None),
        # A write: one script bumps its two tags and publishes them.
        ("", {"eval": 1, "set": 2, "incr": 2, "publish": 1}, None),
        ("MISS", {"mget": 1, "set": 1}, None),
        ("HIT", {"mget": 1}, None),
        # A new container of a running deployment: connect (INFO, the restart check finds the
        # incarnation current), the start-up PING, then a plain hit.
        ("HIT", {"info": 1, "eval": 1, "get": 1, "ping": 1, "mget": 1}, None),
    ],
    "rest": [
        # The start-up PING carries the restart check (one script reading INFO itself, which
        # finds the namespace empty and sets its epoch): 1 request. Then the lookup (1), the
        # counter script, unknown to this Redis so far (EVALSHA answered NOSCRIPT, then EVAL:
        # 2, once per database, not per container), the store (1).
        ("MISS", {"eval": 2, "info": 1, "get": 1, "set": 6, "publish": 1, "ping": 1,
                  "mget": 2, "evalsha": 1}, 5),
        # A new tag: the counter script by its SHA now.
        ("MISS", {"mget": 2, "evalsha": 1, "set": 4}, 3),
        ("HIT", {"mget": 1}, 1),
        # A write: the bump script by its SHA (the sign-up's write sent it first).
        ("", {"evalsha": 1, "set": 2, "incr": 2, "publish": 1}, 1),
        ("MISS", {"mget": 1, "set": 1}, 2),
        ("HIT", {"mget": 1}, 1),
        # A new container: the start-up PING with the restart check, then the hit.
        ("HIT", {"eval": 1, "info": 1, "get": 1, "ping": 1, "mget": 1}, 2),
    ],
}


def test_the_redis_commands_of_each_kind_of_invocation(
        function_env: redis.Redis, cache_server: CacheServer,
        request: pytest.FixtureRequest) -> None:
    """The command and request budget upstash.md quotes (section 10)."""
    admin, server = function_env, cache_server
    admin.script_flush()  # a database that never ran the scripts, whatever ran before
    spent = []
    with container(SERVERLESS) as fn:
        spent.append(counted(admin, server, fn, "GET", "/api/jobs/stats"))
        spent.append(counted(admin, server, fn, "GET", "/api/jobs"))
        spent.append(counted(admin, server, fn, "GET", "/api/jobs"))
        token = fn.invoke("POST", "/api/auth/register", body={
            "username": "bob", "email": "bob@example.com", "password": "password123"}
        ).json()["token"]
        spent.append(counted(admin, server, fn, "POST", "/api/jobs", body=_JOB,
                             headers={"Authorization": f"Bearer {token}"}))
        spent.append(counted(admin, server, fn, "GET", "/api/jobs"))
        spent.append(counted(admin, server, fn, "GET", "/api/jobs"))
    with container(SERVERLESS) as fn:
        spent.append(counted(admin, server, fn, "GET", "/api/jobs"))
    assert spent == _BUDGET[request.node.callspec.params["cache_server"]]
