"""Shared fixtures: databases (SQLite file, real PostgreSQL), a throwaway Redis, the app."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_postgresql.janitor import DatabaseJanitor
from pytest_redis import factories as redis_factories
from sanic import Sanic

from app import create_app
from settings import Settings
from tests.server import Client, running

Sanic.test_mode = True

# A throwaway redis-server on a free port per test session (pytest-redis); fault tests that
# kill or pause Redis start their own with `redis_factories.redis_proc` too.
redis_server = redis_factories.redis_proc(port=None, timeout=10)

PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TEST_PG_USER", "postgres")
PG_PASSWORD = os.environ.get("TEST_PG_PASSWORD", "")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    dbname = f"test_api_{uuid.uuid4().hex[:10]}"
    janitor = DatabaseJanitor(user=PG_USER, host=PG_HOST, port=PG_PORT, dbname=dbname,
                              password=PG_PASSWORD or None)
    with janitor:
        auth = f"{PG_USER}:{PG_PASSWORD}@" if PG_PASSWORD else f"{PG_USER}@"
        yield f"postgres://{auth}{PG_HOST}:{PG_PORT}/{dbname}"


async def _truncate_postgres(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        # The migration history stays: without it the tables would read as made by
        # generate_schemas, and start-up would refuse them.
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'tortoise_migrations'")
        if tables:
            names = ", ".join(f'"{row["tablename"]}"' for row in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each API test runs twice: on an embedded SQLite file and on a real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/test.sqlite3"
        return
    url = request.getfixturevalue("postgres_url")
    await _truncate_postgres(url)
    yield url


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"database_url": database_url,
                                  "secret_key": "test-secret-key-0123456789abcdef"}
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def client(make_settings: Callable[..., Settings]) -> AsyncIterator[Client]:
    """The whole service (memory cache) on a loopback port."""
    app = create_app(make_settings())
    async with running(app) as http:
        yield http
