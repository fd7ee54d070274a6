"""CACHE_ENABLED=false: the service runs without the response cache (the bench's "no cache")."""

from __future__ import annotations

from collections.abc import Callable

from app import create_app
from settings import Settings
from tests.integration.api_support import register
from tests.server import running


def test_cache_enabled_is_read_from_the_environment() -> None:
    assert Settings.from_env({"CACHE_ENABLED": "false"}).cache_enabled is False
    assert Settings.from_env({}).cache_enabled is True


async def test_disabled_cache_serves_every_read_uncached(
        make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(cache_enabled=False))
    async with running(app) as client:
        assert getattr(app.ctx, "cache", None) is None
        _, auth = await register(client, "ann")
        first = await client.get("/api/posts")
        assert first.status == 200 and first.json["items"] == []
        assert "x-cache" not in first.headers and "etag" not in first.headers
        created = await client.post("/api/posts", json={"content": "hello"}, headers=auth)
        assert created.status == 201
        second = await client.get("/api/posts")
        assert [item["content"] for item in second.json["items"]] == ["hello"]
        assert "x-cache" not in second.headers
        health = await client.get("/health/cache")
        assert health.status == 503 and health.json["status"] == "unhealthy"
        assert "CACHE_ENABLED=false" in health.json["reason"]
        detailed = await client.get("/health/detailed")
        assert detailed.status == 200  # the service itself is fine
        assert detailed.json["cache"]["status"] == "unhealthy"


async def test_enabled_cache_marks_reads(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings())
    async with running(app) as client:
        first = await client.get("/api/posts")
        second = await client.get("/api/posts")
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
