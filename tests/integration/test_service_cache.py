"""The real service with its cache: memory backend and a real throwaway redis-server.

Hits are proven by counting the database statements the service runs; every write is checked
to clear exactly the entries it changes (they turn into MISS) and nothing else (still HIT).
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_redis import factories as redis_factories
from redis.asyncio import Redis
from tortoise import connections

from app import create_app
from middleware.breaker import CLOSED, OPEN
from middleware.keys import response_key
from settings import Settings
from tests.integration.api_support import register
from tests.server import Client, running

redis_service_to_kill = redis_factories.redis_proc(port=None, timeout=10, save="3600 1")

CACHE_BACKENDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


class Statements:
    """Counts the SQL statements of the app's database client (all kinds)."""

    def __init__(self) -> None:
        self.count = 0

    def install(self) -> None:
        client = connections.get("default")
        for name in ("execute_query", "execute_query_dict", "execute_insert", "execute_many"):
            method = getattr(client, name)
            setattr(client, name, self._counted(method))

    def _counted(self, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await method(*args, **kwargs)
        return counted


class Service:
    def __init__(self, client: Client, app: Any, statements: Statements) -> None:
        self.client = client
        self.app = app
        self.statements = statements

    @property
    def cache(self) -> Any:
        return self.app.ctx.cache


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> str | None:
    if request.node.callspec.params.get("cache_backend") != "redis":
        return None
    proc = request.getfixturevalue("redis_server")
    return f"redis://{proc.host}:{proc.port}/0"


@pytest.fixture(params=CACHE_BACKENDS)
def cache_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def start_service(tmp_path: Path, redis_url: str | None,
                        monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Statements]:
    # Every test gets its own key namespace on the shared session redis-server.
    monkeypatch.setenv("CACHE_NAMESPACE", f"svc{uuid.uuid4().hex[:12]}")
    monkeypatch.setenv("CACHE_BREAKER_FAILURES", "2")
    settings = Settings(database_url=f"sqlite://{tmp_path}/svc.sqlite3", redis_url=redis_url,
                        secret_key="test-secret-key-0123456789abcdef")
    return create_app(settings), Statements()


@pytest.fixture
async def service(cache_backend: str, redis_url: str | None, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Service]:
    app, statements = await start_service(tmp_path, redis_url, monkeypatch)
    async with running(app) as client:
        statements.install()
        assert app.ctx.cache.tiers.configured_backend == cache_backend
        yield Service(client, app, statements)


async def test_reads_are_cached_and_hits_skip_the_database(service: Service) -> None:
    client = service.client
    _, ann = await register(client, "ann")
    post = (await client.post("/api/posts", json={"content": "hello"}, headers=ann)).json
    job = (await client.post("/api/jobs", headers=ann, json={
        "title": "Engineer", "company": "Acme", "location": "Berlin", "remote": False,
        "salary_min": 1, "salary_max": 2, "description": "Build things", "tags": ["python"],
    })).json
    paths = ["/api/posts", "/api/posts?author=ann", f"/api/posts/{post['id']}", "/api/jobs",
             "/api/jobs?location=berlin&remote=false", "/api/jobs/stats",
             f"/api/jobs/{job['id']}", "/api/users/list", f"/api/users/{post['author']['id']}"]
    for path in paths:
        miss = await client.get(path)
        assert miss.status == 200 and miss.headers["x-cache"] == "MISS", path
        before = service.statements.count
        hit = await client.get(path)
        assert hit.status == 200 and hit.headers["x-cache"] == "HIT", path
        assert hit.json == miss.json and hit.headers["etag"] == miss.headers["etag"]
        assert service.statements.count == before, f"{path} hit the database"
    head = await client.head("/api/posts")
    assert head.status == 200 and head.headers["x-cache"] == "HIT" and head.content == b""
    stats = service.cache.stats()
    assert stats["hits"] == len(paths) + 1 and stats["misses"] == len(paths)


async def test_me_is_per_user_and_private(service: Service) -> None:
    client = service.client
    _, ann = await register(client, "ann")
    _, bob = await register(client, "bob")
    first = await client.get("/api/auth/me", headers=ann)
    bobs = await client.get("/api/auth/me", headers=bob)
    again = await client.get("/api/auth/me", headers=ann)
    assert first.json["username"] == again.json["username"] == "ann"
    assert bobs.json["username"] == "bob" and bobs.headers["x-cache"] == "MISS"
    assert again.headers["x-cache"] == "HIT"
    assert again.headers["cache-control"] == "private, no-cache"
    assert (await client.get("/api/auth/me")).status == 401
    # A shared route requested with credentials bypasses the shared entry.
    await client.get("/api/posts")
    assert (await client.get("/api/posts", headers=ann)).headers["x-cache"] == "BYPASS"


class World:
    """Two users with posts and a job, and the reads a write may or may not change."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.auth: dict[str, dict[str, str]] = {}
        self.ids: dict[str, int] = {}

    async def build(self) -> None:
        client = self.client
        for name in ("ann", "bob"):
            user, self.auth[name] = await register(client, name)
            self.ids[name] = user["id"]
            for n in (1, 2):
                post = await client.post("/api/posts", json={"content": f"{name} {n}"},
                                         headers=self.auth[name])
                self.ids[f"{name}_post{n}"] = post.json["id"]
        job = await client.post("/api/jobs", headers=self.auth["ann"], json={
            "title": "Engineer", "company": "Acme", "location": "Berlin", "remote": True,
            "salary_min": 1, "salary_max": 2, "description": "Build", "tags": ["python"]})
        self.ids["job"] = job.json["id"]

    def reads(self) -> dict[str, tuple[str, dict[str, str] | None]]:
        i = self.ids
        return {
            "feed": ("/api/posts", None),
            "ann_posts": ("/api/posts?author=ann", None),
            "bob_posts": ("/api/posts?author=bob", None),
            "ann_post1": (f"/api/posts/{i['ann_post1']}", None),
            "bob_post1": (f"/api/posts/{i['bob_post1']}", None),
            "users": ("/api/users/list", None),
            "ann": (f"/api/users/{i['ann']}", None),
            "bob": (f"/api/users/{i['bob']}", None),
            "ann_me": ("/api/auth/me", self.auth["ann"]),
            "bob_me": ("/api/auth/me", self.auth["bob"]),
            "jobs": ("/api/jobs", None),
            "jobs_remote": ("/api/jobs?remote=true", None),
            "stats": ("/api/jobs/stats", None),
            "job": (f"/api/jobs/{i['job']}", None),
        }

    async def warm(self) -> set[str]:
        """Fill every read's entry; returns the reads that are now cached (not 404s)."""
        cached = set()
        for name, (path, headers) in self.reads().items():
            await self.client.get(path, headers=headers)
            again = await self.client.get(path, headers=headers)
            if again.status == 200:
                assert again.headers["x-cache"] == "HIT", name
                cached.add(name)
        return cached

    async def outcomes(self, names: set[str]) -> dict[str, str]:
        out = {}
        for name, (path, headers) in self.reads().items():
            if name in names:
                response = await self.client.get(path, headers=headers)
                assert response.status in (200, 404), (name, response.text)
                out[name] = response.headers["x-cache"]
        return out


POST_WRITES = {"feed", "ann_posts"}
ANN_COUNTS = {"users", "ann", "ann_me"}
JOB_READS = {"jobs", "jobs_remote", "stats"}

WRITES: list[tuple[str, str, str, str, dict[str, Any] | None, set[str]]] = [
    # (case, user, method, path template, body, reads that must change); run in this order
    ("create post", "ann", "POST", "/api/posts", {"content": "new"}, POST_WRITES | ANN_COUNTS),
    ("edit post", "ann", "PATCH", "/api/posts/{ann_post1}", {"content": "edited"},
     POST_WRITES | {"ann_post1"}),
    ("follow", "ann", "POST", "/api/users/{bob}/follow", None,
     {"users", "ann", "bob", "ann_me", "bob_me"}),
    ("unfollow", "ann", "DELETE", "/api/users/{bob}/follow", None,
     {"users", "ann", "bob", "ann_me", "bob_me"}),
    ("create job", "bob", "POST", "/api/jobs", {
        "title": "Dev", "company": "B", "location": "Paris", "remote": True, "salary_min": 1,
        "salary_max": 3, "description": "d", "tags": []}, JOB_READS),
    ("edit job", "ann", "PATCH", "/api/jobs/{job}", {"title": "Senior Engineer"},
     JOB_READS | {"job"}),
    ("register", "", "POST", "/api/auth/register",
     {"username": "cyd", "email": "cyd@example.com", "password": "password123"}, {"users"}),
    ("delete post", "ann", "DELETE", "/api/posts/{ann_post1}", None,
     POST_WRITES | {"ann_post1"} | ANN_COUNTS),
    ("delete job", "ann", "DELETE", "/api/jobs/{job}", None, JOB_READS | {"job"}),
]


async def test_each_write_clears_exactly_what_it_changes(service: Service) -> None:
    world = World(service.client)
    await world.build()
    for case, user, method, path, body, changed in WRITES:
        cached = await world.warm()
        response = await service.client.request(method, path.format(**world.ids), json=body,
                                                headers=world.auth.get(user))
        assert 200 <= response.status < 300, (case, response.text)
        outcomes = await world.outcomes(cached)
        expected = {name: "MISS" if name in changed else "HIT" for name in outcomes}
        assert outcomes == expected, case


async def test_unfollow_clears_both_users_counts(service: Service) -> None:
    world = World(service.client)
    await world.build()
    ann, bob = world.auth["ann"], world.ids["bob"]
    await service.client.post(f"/api/users/{bob}/follow", headers=ann)
    await world.warm()
    assert (await service.client.get(f"/api/users/{bob}")).json["followers_count"] == 1
    assert (await service.client.delete(f"/api/users/{bob}/follow", headers=ann)).status == 204
    fresh = await service.client.get(f"/api/users/{bob}")
    assert fresh.headers["x-cache"] == "MISS" and fresh.json["followers_count"] == 0
    assert (await service.client.get("/api/jobs")).headers["x-cache"] == "HIT"


async def test_the_writer_reads_its_own_write(service: Service) -> None:
    client = service.client
    _, ann = await register(client, "ann")
    assert (await client.get("/api/posts")).json["items"] == []
    await client.post("/api/posts", json={"content": "mine"}, headers=ann)
    assert [p["content"] for p in (await client.get("/api/posts")).json["items"]] == ["mine"]


async def test_concurrent_readers_and_writers_end_on_the_final_data(service: Service) -> None:
    client = service.client
    ann_user, ann = await register(client, "ann")
    post = (await client.post("/api/posts", json={"content": "v0"}, headers=ann)).json
    post_path = f"/api/posts/{post['id']}"
    user_path = f"/api/users/{ann_user['id']}"
    versions = 8

    async def writer() -> None:
        for n in range(1, versions + 1):
            edited = await client.patch(post_path, json={"content": f"v{n}"}, headers=ann)
            assert edited.status == 200
            created = await client.post("/api/posts", json={"content": f"extra {n}"},
                                        headers=ann)
            assert created.status == 201

    async def reader(path: str) -> None:
        for _ in range(6):
            assert (await client.get(path)).status == 200

    readers = [reader(p) for p in (post_path, "/api/posts", user_path) for _ in range(4)]
    await asyncio.gather(writer(), *readers)
    # Every read issued after the last write sees the final data, hit or miss.
    finals = await asyncio.gather(*(client.get(post_path) for _ in range(5)),
                                  *(client.get("/api/posts?limit=50") for _ in range(5)),
                                  *(client.get(user_path) for _ in range(5)))
    for response in finals[:5]:
        assert response.json["content"] == f"v{versions}"
    for response in finals[5:10]:
        contents = {p["content"] for p in response.json["items"]}
        assert contents == {f"v{versions}"} | {f"extra {n}" for n in range(1, versions + 1)}
    for response in finals[10:]:
        assert response.json["posts_count"] == versions + 1
    assert service.cache.stats()["hits"] > 0


@pytest.mark.redis
async def test_redis_killed_mid_run_never_fails_and_serves_no_pre_write_entry(
        redis_service_to_kill: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc = redis_service_to_kill
    url = f"redis://{proc.host}:{proc.port}/0"
    app, statements = await start_service(tmp_path, url, monkeypatch)
    async with running(app) as client:
        cache = app.ctx.cache
        assert cache.tiers.backend_name == "redis"
        _, ann = await register(client, "ann")
        await client.post("/api/posts", json={"content": "before"}, headers=ann)
        for path in ("/api/posts", "/api/users/list", "/api/jobs/stats"):
            await client.get(path)
            assert (await client.get(path)).headers["x-cache"] == "HIT"
        proc.stop()
        try:
            reads = [await client.get(p)
                     for p in ("/api/posts", "/api/users/list", "/api/jobs/stats") * 3]
            assert [r.status for r in reads] == [200] * 9
            written = await client.post("/api/posts", json={"content": "during"}, headers=ann)
            assert written.status == 201
            during = await client.get("/api/posts")
            assert during.status == 200
            assert [p["content"] for p in during.json["items"]] == ["during", "before"]
            assert cache.tiers.breaker.state == OPEN and cache.stats()["errors"] >= 2
        finally:
            proc.start()
        raw = Redis(host=proc.host, port=proc.port)
        try:
            old = await raw.get(response_key(cache.settings.namespace, "/api/posts"))
            assert old is not None, "the pre-write feed entry survived the restart"
        finally:
            await raw.aclose()
        cache.tiers.breaker.reset_timeout = 0.0
        after = await asyncio.gather(*(client.get("/api/posts") for _ in range(5)))
        for response in after:
            assert response.status == 200
            assert [p["content"] for p in response.json["items"]] == ["during", "before"]
        users = await client.get("/api/users/list")
        assert users.json["items"][0]["posts_count"] == 2
        assert cache.tiers.breaker.state == CLOSED and cache.tiers.backend_name == "redis"
        # The restarted Redis is a new incarnation (its data could be an older snapshot):
        # everything from before is a miss once, then hits again.
        assert (await client.get("/api/jobs/stats")).headers["x-cache"] == "MISS"
        assert (await client.get("/api/jobs/stats")).headers["x-cache"] == "HIT"
        assert statements is not None


def test_rules_cover_every_write_route() -> None:
    """Every mutating route of the service has an invalidation rule (nothing forgotten)."""
    from cache_rules import CACHE_RULES
    from middleware import InvalidationRule
    from middleware.rules import normalise_route_path

    app = create_app(Settings(database_url="sqlite://:memory:",
                              secret_key="test-secret-key-0123456789abcdef"))
    app.router.finalize()
    declared = Counter((r.method, normalise_route_path(r.path))
                       for r in CACHE_RULES if isinstance(r, InvalidationRule))
    exempt = {("POST", "api/auth/login")}
    for route in app.router.routes:
        for method in set(route.methods) & {"POST", "PUT", "PATCH", "DELETE"}:
            key = (method, normalise_route_path(route.path))
            assert key in declared or key in exempt, f"{key} has no invalidation rule"
