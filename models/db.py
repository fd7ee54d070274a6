"""Database lifecycle: Tortoise configuration, the schema check and the Sanic listeners."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from sanic import Sanic
from tortoise import Tortoise, connections
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.exceptions import DBConnectionError

from models.db_retry import retry_when_unavailable
from models.pg_url import tortoise_connection
from models.schema import SchemaStatus, prepare_schema

log = logging.getLogger(__name__)

_CANNOT_CONNECT = (OSError, DBConnectionError, asyncpg.InvalidAuthorizationSpecificationError,
                   asyncpg.InvalidCatalogNameError)
"""What reaching the database at start-up raises when ``DATABASE_URL`` (or the server) is
wrong: refused or unreachable, TLS refused, unknown role or password, no such database."""


class DatabaseUnreachableError(RuntimeError):
    """Start-up could not connect to ``DATABASE_URL``'s database; the message says where and
    why, never the password."""


MODEL_MODULES = ["models.user", "models.post", "models.job"]
APPS: dict[str, dict[str, Any]] = {
    "models": {"models": MODEL_MODULES, "default_connection": "default",
               # tortoise makemigrations writes here; python -m models.migrate applies them
               "migrations": "models.migrations"},
}


def tortoise_config(database_url: str) -> dict[str, Any]:
    """Tortoise's config; a PostgreSQL URL becomes credentials, its libpq options translated."""
    connection: str | dict[str, Any] = database_url
    if not database_url.startswith("sqlite://"):
        connection = tortoise_connection(database_url)
    return {
        "connections": {"default": connection},
        "apps": {label: dict(app) for label, app in APPS.items()},  # Tortoise may amend it
        "use_tz": True,
        "timezone": "UTC",
    }


def describe_database(database_url: str) -> str:
    """A log-safe name of the database: engine and location, never the password."""
    scheme, _, rest = database_url.partition("://")
    if scheme == "sqlite":
        return f"SQLite ({rest})"
    # The query is left out: libpq lets it carry a password (``?password=``).
    host = rest.partition("?")[0].rsplit("@", 1)[-1]
    return f"PostgreSQL ({host})"


async def init_database(database_url: str) -> None:
    """Open the ``default`` connection on ``database_url`` for this process."""
    # Tortoise caches each model's INSERT/DELETE SQL per connection *name*, across inits: after
    # a SQLite "default" the same process would send "?" placeholders to PostgreSQL.
    EXECUTOR_CACHE.clear()
    # The global fallback makes the context opened in a listener visible to every handler task
    # (tortoise-orm 1.x keeps state per context otherwise).
    await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)


async def ensure_schema(*, migrate_pending: bool = False) -> SchemaStatus:
    """Bring an empty database to the latest migration; refuse one that is behind unless
    ``migrate_pending`` (``models.schema.prepare_schema``); safe from several processes."""
    return await prepare_schema(connections.get("default"), APPS, migrate_pending=migrate_pending)


def register_database(app: Sanic, database_url: str, *, retry_seconds: float = 0.0,
                      migrate_pending: bool = False) -> None:
    """Open the ORM in each worker before it serves, close it after it stops; statements wait
    up to ``retry_seconds`` for a PostgreSQL that is restarting (``models.db_retry``).

    The schema is checked first in the main process, once however many workers follow (an
    empty database is migrated there, a database that is behind stops the service with one
    message), then again by each worker before it serves (``ensure_schema``).
    """

    async def check_schema(app: Sanic) -> None:
        try:
            await init_database(database_url)
            try:
                await ensure_schema(migrate_pending=migrate_pending)
            finally:
                await Tortoise.close_connections()
        except _CANNOT_CONNECT as exc:
            raise DatabaseUnreachableError(
                f"DATABASE_URL: cannot connect to {describe_database(database_url)}: "
                f"{type(exc).__name__}: {exc}") from exc

    async def open_database(app: Sanic) -> None:
        await init_database(database_url)
        retry_when_unavailable(connections.get("default"), retry_seconds)
        await ensure_schema(migrate_pending=migrate_pending)
        log.info("Database connected: %s", describe_database(database_url))

    async def close_database(app: Sanic) -> None:
        await Tortoise.close_connections()

    # Registered before the demo seed (create_app's order), which needs the tables: Sanic runs
    # main_process_start listeners in that order (it has no priorities for them).
    app.register_listener(check_schema, "main_process_start")
    # Opened first and closed last, so other listeners (the cache, seeding) can use it.
    app.register_listener(open_database, "before_server_start", priority=1000)
    app.register_listener(close_database, "after_server_stop", priority=-1000)
