"""``CORS_ORIGINS``: cached routes stay cached with CORS on (one entry for every origin), each
origin gets its own ``Access-Control-Allow-Origin`` computed per request (a disallowed origin
never receives another's from the cache), preflights work, and nothing changes when unset.
Over HTTP against a real throwaway redis-server (the strict path and the hot tier)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pytest_redis.executor import RedisExecutor

from app import create_app
from settings import Settings
from tests.integration.api_support import register
from tests.integration.test_service_cache import Statements
from tests.server import Client, running

pytestmark = pytest.mark.redis

A = "https://a.example"
B = "http://localhost:5173"
EVIL = "https://evil.example"
ACAO = "access-control-allow-origin"


@dataclass
class Service:
    client: Client
    app: Any
    statements: Statements


def varies_on_origin(response: Any) -> bool:
    return "origin" in {v.strip().lower() for v in response.headers.get("vary", "").split(",")}


@pytest.fixture(params=["redis-hot", "redis-strict"])
def start(request: pytest.FixtureRequest, redis_server: RedisExecutor, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    monkeypatch.setenv("CACHE_NAMESPACE", f"cors{uuid.uuid4().hex[:12]}")
    monkeypatch.setenv("CACHE_LOCAL", "true" if request.param == "redis-hot" else "false")

    def make(cors_origins: tuple[str, ...]) -> Any:
        settings = Settings(database_url=f"sqlite://{tmp_path}/cors.sqlite3",
                            redis_url=f"redis://{redis_server.host}:{redis_server.port}/0",
                            secret_key="test-secret-key-0123456789abcdef",
                            cors_origins=cors_origins)
        return create_app(settings)
    return make


@pytest.fixture
async def service(start: Callable[..., Any]) -> AsyncIterator[Service]:
    app = start((A, B))
    async with running(app) as client:
        statements = Statements()
        statements.install()
        yield Service(client, app, statements)


async def get(service: Service, path: str, origin: str | None, **headers: str) -> Any:
    if origin:
        headers["Origin"] = origin
    return await service.client.get(path, headers=headers)


async def test_one_entry_serves_every_origin_with_its_own_allow_origin(service: Service) -> None:
    _, ann = await register(service.client, "ann")
    await service.client.post("/api/posts", json={"content": "hello"}, headers=ann)
    # The first request comes from a disallowed origin: the entry it stores holds no CORS
    # header, and allowed origins still get theirs on hits.
    first = await get(service, "/api/posts", EVIL)
    assert first.status == 200 and first.headers["x-cache"] == "MISS"
    assert ACAO not in first.headers and varies_on_origin(first)
    before = service.statements.count
    for origin, allowed in [(A, A), (B, B), (EVIL, None), (None, None), (A, A)]:
        hit = await get(service, "/api/posts", origin)
        assert hit.status == 200 and hit.headers["x-cache"] == "HIT", origin
        assert hit.headers.get(ACAO) == allowed, origin
        assert varies_on_origin(hit), origin
        assert hit.json == first.json
    assert service.statements.count == before  # every one of them was a hit
    assert service.app.ctx.cache.stats()["stores"] == 1


async def test_a_disallowed_origin_never_gets_an_allowed_origin_from_the_cache(
        service: Service) -> None:
    _, ann = await register(service.client, "ann")
    stored = await get(service, "/api/posts", A)
    assert stored.headers["x-cache"] == "MISS" and stored.headers[ACAO] == A
    hit = await get(service, "/api/posts", EVIL)
    assert hit.headers["x-cache"] == "HIT" and ACAO not in hit.headers
    not_modified = await get(service, "/api/posts", EVIL, **{"If-None-Match": hit.headers["etag"]})
    assert not_modified.status == 304 and ACAO not in not_modified.headers
    assert varies_on_origin(not_modified)
    # Per-user entries too.
    mine = await service.client.get("/api/auth/me", headers={**ann, "Origin": A})
    assert mine.headers["x-cache"] == "MISS" and mine.headers[ACAO] == A
    again = await service.client.get("/api/auth/me", headers={**ann, "Origin": EVIL})
    assert again.headers["x-cache"] == "HIT" and ACAO not in again.headers
    mixed_case = await get(service, "/api/posts", "HTTPS://A.EXAMPLE")
    assert ACAO not in mixed_case.headers  # origins are compared exactly, as browsers send them


async def test_preflight(service: Service) -> None:
    asked = {"Access-Control-Request-Method": "PATCH",
             "Access-Control-Request-Headers": "authorization, content-type"}
    for path in ("/api/posts", "/api/posts/1", "/api/users/1/follow"):
        ok = await service.client.options(path, headers={"Origin": A, **asked})
        assert ok.status == 204, path
        assert ok.headers[ACAO] == A
        methods = {m.strip() for m in ok.headers["access-control-allow-methods"].split(",")}
        assert {"GET", "POST", "PATCH", "DELETE"} <= methods
        allowed = {h.strip() for h in ok.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type"} <= allowed
        assert int(ok.headers["access-control-max-age"]) > 0
        assert varies_on_origin(ok)
        refused = await service.client.options(path, headers={"Origin": EVIL, **asked})
        assert ACAO not in refused.headers and "access-control-allow-methods" not in refused.headers


async def test_actual_requests_expose_headers_and_errors_are_readable(service: Service) -> None:
    response = await get(service, "/api/posts", A)
    exposed = {h.strip() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"etag", "x-cache", "x-request-id"} <= exposed
    assert "access-control-allow-credentials" not in response.headers  # bearer tokens only
    missing = await get(service, "/api/posts/424242", A)
    assert missing.status == 404 and missing.headers[ACAO] == A
    write = await service.client.post("/api/posts", json={"content": "x"}, headers={"Origin": A})
    assert write.status == 401 and write.headers[ACAO] == A


async def test_any_origin(start: Callable[..., Any]) -> None:
    async with running(start(("*",))) as client:
        first = await client.get("/api/posts", headers={"Origin": EVIL})
        hit = await client.get("/api/posts", headers={"Origin": A})
        assert first.headers[ACAO] == hit.headers[ACAO] == "*"
        assert hit.headers["x-cache"] == "HIT"
        assert not varies_on_origin(hit)  # the same answer for every origin
        preflight = await client.options("/api/posts", headers={
            "Origin": A, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization"})
        assert preflight.status == 204 and preflight.headers[ACAO] == "*"
        # "*" does not cover Authorization (Fetch standard): it is listed by name.
        assert "authorization" in preflight.headers["access-control-allow-headers"]


async def test_no_cors_headers_when_unset(start: Callable[..., Any]) -> None:
    async with running(start(())) as client:
        for _ in range(2):
            response = await client.get("/api/posts", headers={"Origin": A})
            assert not any(name.startswith("access-control-") for name in response.headers)
            assert not varies_on_origin(response)
        assert response.headers["x-cache"] == "HIT"
        preflight = await client.options("/api/posts", headers={
            "Origin": A, "Access-Control-Request-Method": "POST"})
        assert preflight.status == 405 and ACAO not in preflight.headers
