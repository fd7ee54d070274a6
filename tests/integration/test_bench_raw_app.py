"""The bench's raw asyncpg reference answers with the service's uncached feed bytes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app import create_app
from bench.raw_app import create_raw_app
from models.post import Post
from models.user import User
from settings import Settings
from tests.conftest import _truncate_postgres
from tests.server import running

pytestmark = pytest.mark.postgres


async def test_raw_reference_serves_the_service_feed_bytes(postgres_url: str) -> None:
    await _truncate_postgres(postgres_url)
    settings = Settings(database_url=postgres_url, cache_enabled=False,
                        secret_key="test-secret-key-0123456789abcdef")
    async with running(create_app(settings)) as service:
        author = await User.create(username="ruth", email="r@example.com", password_hash="-")
        tie = datetime(2025, 1, 1, tzinfo=UTC)
        await Post.bulk_create([Post(author_id=author.id, content=f"p{i} ✨",
                                     **({"created_at": tie} if i % 2 else {}))
                                for i in range(45)])
        raw_app = create_raw_app(postgres_url.replace("postgres://", "postgresql://", 1))
        async with running(raw_app) as raw:
            for limit in ("20", "7", "45", "100"):
                cursor = None
                pages = 0
                while True:
                    params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
                    expected = await service.get("/api/posts", params=params)
                    got = await raw.get("/api/posts", params=params)
                    assert expected.status == got.status == 200
                    assert got.content == expected.content
                    pages += 1
                    cursor = expected.json["next_cursor"]
                    if cursor is None:
                        break
                assert pages == -(-45 // int(limit))
            default = await raw.get("/api/posts")
            assert default.content == (await service.get("/api/posts")).content
