"""``GET /metrics`` in one process: request, database and cache metrics, label bounds."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest_redis.executor import RedisExecutor
from redis import Redis

from app import create_app
from handlers.metrics import CacheMetricsObserver
from observability import metrics as metrics_module
from observability.metrics import Metrics, tag_family
from settings import Settings
from tests.server import Client, running


async def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` as {(name, sorted labels): value}."""
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_requests_counted_per_route_template_and_status(client: Client) -> None:
    for _ in range(3):
        assert (await client.get("/health")).status == 200
    for user_id in (987654, 987655):  # two raw paths, one route template
        assert (await client.get(f"/api/users/{user_id}")).status == 404
    assert (await client.get("/no/such/route")).status == 404
    samples = await scrape(client)
    assert value(samples, "http_requests_total",
                 method="GET", route="/health", status="200") == 3
    assert value(samples, "http_requests_total",
                 method="GET", route="/api/users/<user_id:int>", status="404") == 2
    assert value(samples, "http_requests_total",
                 method="GET", route="<unmatched>", status="404") == 1
    assert value(samples, "http_request_duration_seconds_count",
                 method="GET", route="/health", status="200") == 3
    assert value(samples, "http_request_duration_seconds_bucket",
                 method="GET", route="/health", status="200", le="+Inf") == 3
    assert not any("987654" in str(key) for key in samples)
    # One process, no multiprocess directory: the worker gauge has no pid label.
    assert value(samples, "http_worker_requests") >= 6


async def test_database_statements_are_timed_inside_transactions_too(client: Client) -> None:
    before = await scrape(client)
    registered = await client.post("/api/auth/register", json={
        "username": "metrics_user", "email": "metrics@example.com", "password": "password123"})
    assert registered.status == 201
    token = registered.json["token"]
    middle = await scrape(client)
    assert value(middle, "db_query_duration_seconds_count", operation="insert") > \
        value(before, "db_query_duration_seconds_count", operation="insert")
    assert value(middle, "db_query_duration_seconds_count", operation="query") > \
        value(before, "db_query_duration_seconds_count", operation="query")
    # Job creation runs its INSERTs through in_transaction(): a separate client object.
    created = await client.post("/api/jobs", headers=client.bearer(token), json={
        "title": "Engineer", "company": "Acme", "location": "Berlin", "tags": ["python"]})
    assert created.status == 201, created.json
    after = await scrape(client)
    assert value(after, "db_query_duration_seconds_count", operation="insert") > \
        value(middle, "db_query_duration_seconds_count", operation="insert")


def test_cache_observer_feeds_the_cache_metrics() -> None:
    metrics = Metrics()
    observer = CacheMetricsObserver(metrics)
    observer.on_lookup("/api/posts", "miss")
    observer.on_lookup("/api/posts", "hit")
    observer.on_lookup("/api/posts", "hit")
    observer.on_lookup("/api/jobs", "bypass")
    observer.on_store("/api/posts")
    observer.on_invalidate("post:42")
    observer.on_invalidate("post:43")
    observer.on_invalidate("posts:author:alice")
    observer.on_error("/api/posts", "lookup")
    observer.on_breaker_transition("closed", "open")
    observer.on_backend_command("MGET", 0.0004)
    get = metrics.registry.get_sample_value
    assert get("cache_lookups_total", {"route": "/api/posts", "outcome": "hit"}) == 0
    metrics.tally.flush()  # what the worker's task and every /metrics render do
    assert get("cache_lookups_total", {"route": "/api/posts", "outcome": "hit"}) == 2
    assert get("cache_lookups_total", {"route": "/api/posts", "outcome": "miss"}) == 1
    assert get("cache_lookups_total", {"route": "/api/jobs", "outcome": "bypass"}) == 1
    assert get("cache_stores_total", {"route": "/api/posts"}) == 1
    assert get("cache_invalidations_total", {"tag": "post:{id}"}) == 2
    assert get("cache_invalidations_total", {"tag": "posts:author"}) == 1
    assert get("cache_errors_total", {"route": "/api/posts", "operation": "lookup"}) == 1
    assert get("cache_breaker_state") == 2
    assert get("cache_breaker_transitions_total",
               {"from_state": "closed", "to_state": "open"}) == 1
    assert get("cache_backend_command_duration_seconds_count", {"command": "MGET"}) == 1
    assert get("cache_backend_command_duration_seconds_bucket",
               {"command": "MGET", "le": "0.0005"}) == 1


@pytest.mark.parametrize(("tag", "family"), [
    ("post:42", "post:{id}"),
    ("user:7", "user:{id}"),
    ("posts:feed", "posts:feed"),
    ("posts:author:alice", "posts:author"),
    ("jobs:stats", "jobs:stats"),
    ("users:list", "users:list"),
])
def test_tag_family(tag: str, family: str) -> None:
    assert tag_family(tag) == family


def test_tag_label_cardinality_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "MAX_TAG_FAMILIES", 3)
    metrics = Metrics()
    labels = [metrics.tag_label(f"family{i}:x") for i in range(10)]
    assert labels[:3] == ["family0:x", "family1:x", "family2:x"]
    assert set(labels[3:]) == {"other"}
    assert metrics.tag_label("family1:x") == "family1:x"


def test_prepare_multiprocess_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics_module.MULTIPROC_ENV, raising=False)
    created = metrics_module.prepare_multiprocess_dir()
    assert created and os.path.isdir(created)
    assert os.environ[metrics_module.MULTIPROC_ENV] == created
    metrics_module.remove_multiprocess_dir(created)
    assert not os.path.exists(created)
    assert metrics_module.MULTIPROC_ENV not in os.environ
    # A configured directory is kept, minus the files a previous run left behind.
    configured = tmp_path / "prom"
    configured.mkdir()
    (configured / "counter_4242.db").write_bytes(b"stale")
    (configured / "keep.txt").write_text("not ours")
    monkeypatch.setenv(metrics_module.MULTIPROC_ENV, str(configured))
    assert metrics_module.prepare_multiprocess_dir() is None
    assert sorted(p.name for p in configured.iterdir()) == ["keep.txt"]


async def test_cache_metrics_from_the_service_on_redis(
        tmp_path: Path, redis_server: RedisExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_NAMESPACE", f"metrics{uuid.uuid4().hex[:8]}")
    settings = Settings(database_url=f"sqlite://{tmp_path}/m.sqlite3",
                        secret_key="test-secret-key-0123456789abcdef",
                        redis_url=f"redis://{redis_server.host}:{redis_server.port}/0")
    async with running(create_app(settings)) as client:
        token = (await client.post("/api/auth/register", json={
            "username": "cachemetrics", "email": "cm@example.com",
            "password": "password123"})).json["token"]
        assert (await client.get("/api/posts")).headers["x-cache"] == "MISS"
        assert (await client.get("/api/posts")).headers["x-cache"] == "HIT"
        assert (await client.get("/api/posts",
                                 headers=client.bearer(token))).headers["x-cache"] == "BYPASS"
        assert (await client.post("/api/posts", headers=client.bearer(token),
                                  json={"content": "hi"})).status == 201
        samples = await scrape(client)
    for outcome in ("hit", "miss", "bypass"):
        assert value(samples, "cache_lookups_total", route="/api/posts", outcome=outcome) == 1
    assert value(samples, "cache_stores_total", route="/api/posts") == 1
    assert value(samples, "cache_invalidations_total", tag="posts:feed") == 1
    assert value(samples, "cache_invalidations_total", tag="user:{id}") == 1
    # The miss's MGET; the hit is served by the hot tier (no Redis command).
    assert value(samples, "cache_backend_command_duration_seconds_count", command="MGET") >= 1
    assert value(samples, "cache_backend_command_duration_seconds_count", command="SET") >= 1
    assert value(samples, "cache_breaker_state") == 0
    # The timer starts before the cache's lookup: the hit, served without the handler, is
    # timed like the others.
    assert value(samples, "http_request_duration_seconds_count",
                 method="GET", route="/api/posts", status="200") == 3


async def test_requests_are_counted_with_the_status_the_client_gets(
        tmp_path: Path, redis_server: RedisExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The request metrics run after every other response middleware: a miss that the cache's
    response hook answers 304 (the client already holds the body it computed) is counted as
    the 304 it is, not as the handler's 200."""
    namespace = f"metrics{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CACHE_NAMESPACE", namespace)
    monkeypatch.setenv("CACHE_LOCAL", "false")  # the entry lives in Redis alone
    settings = Settings(database_url=f"sqlite://{tmp_path}/m.sqlite3",
                        secret_key="test-secret-key-0123456789abcdef",
                        redis_url=f"redis://{redis_server.host}:{redis_server.port}/0")
    redis = Redis(host=redis_server.host, port=redis_server.port)
    async with running(create_app(settings)) as client:
        first = await client.get("/api/posts")
        assert first.status == 200 and first.headers["x-cache"] == "MISS"
        # The entry goes (evicted, expired) while nothing changed: the next request misses
        # and computes the body the client holds.
        entries = [key for key in redis.scan_iter(f"{namespace}:*") if b":gen:" not in key]
        assert entries and redis.delete(*entries) == len(entries)
        again = await client.get("/api/posts", headers={"If-None-Match": first.headers["etag"]})
        assert again.status == 304 and again.headers["x-cache"] == "MISS"
        samples = await scrape(client)
    redis.close()
    for status in ("200", "304"):
        assert value(samples, "http_requests_total",
                     method="GET", route="/api/posts", status=status) == 1
