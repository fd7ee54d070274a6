"""Database lifecycle: Tortoise configuration, schema creation and the Sanic listeners."""

from __future__ import annotations

import logging
from typing import Any

from sanic import Sanic
from tortoise import Tortoise, connections
from tortoise.backends.base.executor import EXECUTOR_CACHE

from models.pg_url import tortoise_connection

log = logging.getLogger(__name__)

MODEL_MODULES = ["models.user", "models.post", "models.job"]
# Any constant works: it only has to be the same in every worker racing to create the schema.
_SCHEMA_LOCK_ID = 7_461_230_911


def tortoise_config(database_url: str) -> dict[str, Any]:
    """Tortoise's config; a PostgreSQL URL becomes credentials, its libpq options translated."""
    connection: str | dict[str, Any] = database_url
    if not database_url.startswith("sqlite://"):
        connection = tortoise_connection(database_url)
    return {
        "connections": {"default": connection},
        "apps": {"models": {"models": MODEL_MODULES, "default_connection": "default"}},
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


async def create_schema() -> None:
    """Create missing tables and indexes; safe to run from several workers at once."""
    conn = connections.get("default")
    if conn.capabilities.dialect == "postgres":
        async with conn._in_transaction() as tx:  # noqa: SLF001 - advisory lock needs one session
            await tx.execute_query("SELECT pg_advisory_xact_lock($1)", [_SCHEMA_LOCK_ID])
            await Tortoise.generate_schemas(safe=True)
    else:
        await Tortoise.generate_schemas(safe=True)


def register_database(app: Sanic, database_url: str) -> None:
    """Open the ORM in each worker before it serves, close it after it stops."""

    async def open_database(app: Sanic) -> None:
        await init_database(database_url)
        await create_schema()
        log.info("Database connected: %s", describe_database(database_url))

    async def close_database(app: Sanic) -> None:
        await Tortoise.close_connections()

    # Opened first and closed last, so other listeners (the cache, seeding) can use it.
    app.register_listener(open_database, "before_server_start", priority=1000)
    app.register_listener(close_database, "after_server_stop", priority=-1000)
