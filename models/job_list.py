"""Jobs with their owners and tags, filtered and keyset-paginated, in one statement.

A job's tags come in the same row (a correlated subquery: PostgreSQL's ``ARRAY(...)``,
SQLite's ``json_group_array``), so a page costs one statement instead of the ORM's built query
plus a second one for the tags.  The filters combine into at most 32 statement shapes; each is
written once, on first use, and then reused (see :mod:`models.sql`).  The filters mean what the
ORM query meant: ``location_key`` equal, ``remote`` equal, ``q`` contained case-insensitively
(``UPPER(...) LIKE UPPER(...)``, LIKE wildcards escaped) in the title or the company, a tag.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import orjson

from models.job import Job
from models.sql import Statement, native_datetimes

_TAGS = "ARRAY(SELECT t.tag FROM job_tags t WHERE t.job_id = j.id ORDER BY t.id)"
_TAGS_SQLITE = ("(SELECT json_group_array(tag) FROM"
                " (SELECT t.tag FROM job_tags t WHERE t.job_id = j.id ORDER BY t.id))")
_SELECT = ("SELECT j.id, j.title, j.company, j.location, j.remote, j.salary_min, j.salary_max,"
           " {tags}, j.description, j.created_at, j.owner_id, u.username"
           " FROM jobs j JOIN users u ON u.id = j.owner_id")
# (condition, placeholders): location, remote, text, tag, cursor; {0}, {1} are numbered later.
_CONDITIONS = (
    ("j.location_key = ${0}", 1),
    ("j.remote = ${0}", 1),
    ("(UPPER(j.title) LIKE UPPER(${0}) ESCAPE '\\'"
     " OR UPPER(j.company) LIKE UPPER(${0}) ESCAPE '\\')", 1),
    ("EXISTS (SELECT 1 FROM job_tags jt WHERE jt.job_id = j.id AND jt.tag = ${0})", 1),
    ("(j.created_at, j.id) < (${0}, ${1})", 2),
)


def _both(sql: str) -> Statement:
    return Statement(sql.format(tags=_TAGS), sql.format(tags=_TAGS_SQLITE))


JOB = _both(_SELECT + " WHERE j.id = $1")


@dataclass(frozen=True, slots=True)
class JobFilters:
    """The list's filters; None means not filtered."""

    location_key: str | None = None
    remote: bool | None = None
    text: str | None = None
    tag: str | None = None


@cache
def list_statement(shape: tuple[bool, bool, bool, bool, bool]) -> Statement:
    """The statement for the filters present in ``shape`` (location, remote, text, tag,
    cursor); ``$1`` is the limit, then one placeholder per filter in that order."""
    where: list[str] = []
    number = 2
    for present, (condition, count) in zip(shape, _CONDITIONS, strict=True):
        if present:
            where.append(condition.format(*range(number, number + count)))
            number += count
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
    return _both(sql + " ORDER BY j.created_at DESC, j.id DESC LIMIT $1")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_to_datetime = Job._meta.fields_map["created_at"].to_python_value


def _job(r: Any, native: bool) -> dict[str, Any]:
    return {"id": r[0], "title": r[1], "company": r[2], "location": r[3],
            "remote": bool(r[4]), "salary_min": r[5], "salary_max": r[6],
            "tags": list(r[7]) if native else orjson.loads(r[7]), "description": r[8],
            "created_at": r[9] if native else _to_datetime(r[9]),
            "owner": {"id": r[10], "username": r[11]}}


async def job_rows(limit: int, filters: JobFilters, *,
                   after: tuple[datetime, int] | None = None) -> list[dict[str, Any]]:
    """Up to ``limit`` jobs newest first matching ``filters``, older than ``after``'s
    ``(created_at, id)``, in the API's job shape."""
    values: list[Any] = [limit]
    if filters.location_key is not None:
        values.append(filters.location_key)
    if filters.remote is not None:
        values.append(filters.remote)
    if filters.text is not None:
        values.append(f"%{_escape_like(filters.text)}%")
    if filters.tag is not None:
        values.append(filters.tag)
    if after is not None:
        values += after
    shape = (filters.location_key is not None, filters.remote is not None,
             filters.text is not None, filters.tag is not None, after is not None)
    rows = await list_statement(shape).fetch(*values)
    native = native_datetimes()
    return [_job(row, native) for row in rows]


async def job_by_id(job_id: int) -> dict[str, Any] | None:
    """One job in the API's shape, or None."""
    rows = await JOB.fetch(job_id)
    return _job(rows[0], native_datetimes()) if rows else None
