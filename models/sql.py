"""Fixed SQL statements run through Tortoise's ``default`` connection, on either database.

The hot read paths (the feed, users with their counts, job statistics) skip the ORM's query
builder: rendering a query through Tortoise (``Q`` objects, joins, pypika) cost more CPU per
request than loading its rows.  Each statement here is a module-level string, so nothing is
built per request, and asyncpg reuses the statement it prepared for that text on each pooled
connection.  Statements still go through the connection's ``execute_query``, so the database
timing (``observability.db_timing``) and the restart retry (``models.db_retry``) apply.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tortoise import connections

_NUMBERED = re.compile(r"\$(\d+)")


class Statement:
    """One statement written with PostgreSQL's ``$n`` placeholders, and its SQLite spelling.

    SQLite accepts numbered ``?NNN`` parameters, so each ``$n`` becomes ``?n`` and the values
    are passed in the same order to both drivers.  ``sqlite`` spells the statement differently
    for SQLite where the two dialects differ (its placeholders are converted the same way).
    """

    __slots__ = ("postgres", "sqlite")

    def __init__(self, sql: str, sqlite: str | None = None) -> None:
        self.postgres = sql
        self.sqlite = _NUMBERED.sub(r"?\1", sql if sqlite is None else sqlite)

    def __repr__(self) -> str:
        return f"Statement({self.postgres!r})"

    async def fetch(self, *values: Any) -> Sequence[Sequence[Any]]:
        """The rows (indexable by position) of this statement with ``values``."""
        conn = connections.get("default")
        is_postgres = conn.capabilities.dialect == "postgres"
        _, rows = await conn.execute_query(self.postgres if is_postgres else self.sqlite,
                                           list(values))
        return rows  # type: ignore[no-any-return]


def native_datetimes() -> bool:
    """Whether the driver returns ``timestamptz`` columns as aware datetimes (asyncpg does;
    SQLite returns the text Tortoise stored, which the field's ``to_python_value`` parses)."""
    return bool(connections.get("default").capabilities.dialect == "postgres")
