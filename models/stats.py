"""Aggregate queries: job statistics computed by the database, and the shape of user counts.

Every function here issues a fixed number of queries whatever the number of rows.  The counts
of users come with the users themselves (``models.profiles``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypedDict

from models.sql import Statement

TOP_LOCATIONS = 10
TOP_TAGS = 50


class UserCounts(TypedDict):
    followers_count: int
    following_count: int
    posts_count: int


# Standard SQL that SQLite and PostgreSQL both run; a boolean column is 0/1 in SQLite.
JOB_TOTALS = Statement(
    "SELECT COUNT(*) AS total,"
    " COALESCE(SUM(CASE WHEN remote THEN 1 ELSE 0 END), 0) AS remote,"
    " COUNT(CASE WHEN salary_min IS NOT NULL OR salary_max IS NOT NULL THEN 1 END)"
    " AS with_salary,"
    " MIN(salary_min) AS min_salary, MAX(salary_max) AS max_salary,"
    " AVG(salary_min) AS avg_min, AVG(salary_max) AS avg_max"
    " FROM jobs")
# Grouped by the case-folded key; one of the spellings in the group is shown.
TOP_LOCATION_COUNTS = Statement(
    "SELECT MIN(location) AS name, COUNT(id) AS n FROM jobs GROUP BY location_key"
    " ORDER BY n DESC, location_key LIMIT $1")
TOP_TAG_COUNTS = Statement(
    "SELECT tag, COUNT(id) AS n FROM job_tags GROUP BY tag ORDER BY n DESC, tag LIMIT $1")


def _number(value: Any) -> float | int | None:
    # PostgreSQL's AVG returns numeric (Decimal), which JSON cannot carry as such.
    if value is None:
        return None
    if isinstance(value, Decimal | float):
        return round(float(value), 2)
    return int(value)


async def job_stats() -> dict[str, Any]:
    """Totals, top locations, tag counts and a salary summary of all jobs: three fixed
    statements (the ORM's group-by queries cost more to build than to run)."""
    totals = await JOB_TOTALS.fetch()
    row = dict(totals[0])
    locations = await TOP_LOCATION_COUNTS.fetch(TOP_LOCATIONS)
    tags = await TOP_TAG_COUNTS.fetch(TOP_TAGS)
    return {
        "total": int(row["total"]),
        "remote": int(row["remote"]),
        "locations": [{"location": name, "count": int(n)} for name, n in locations],
        "tags": [{"tag": tag, "count": int(n)} for tag, n in tags],
        "salary": {
            "min": _number(row["min_salary"]),
            "max": _number(row["max_salary"]),
            "avg_min": _number(row["avg_min"]),
            "avg_max": _number(row["avg_max"]),
            "jobs_with_salary": int(row["with_salary"]),
        },
    }
