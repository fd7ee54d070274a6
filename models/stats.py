"""Aggregate queries: per-user counts and job statistics, computed by the database.

Every function here issues a fixed number of queries whatever the number of rows: the counts of
a page of users are three ``GROUP BY`` queries, never one query per user.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, TypedDict

from tortoise import connections
from tortoise.functions import Count, Min

from models.job import Job, JobTag
from models.post import Post
from models.user import Follow

TOP_LOCATIONS = 10
TOP_TAGS = 50


class UserCounts(TypedDict):
    followers_count: int
    following_count: int
    posts_count: int


def _zero() -> UserCounts:
    return {"followers_count": 0, "following_count": 0, "posts_count": 0}


async def _grouped(queryset: Any, column: str) -> dict[int, int]:
    rows = await queryset.group_by(column).annotate(n=Count("id")).values_list(column, "n")
    return {int(key): int(n) for key, n in rows}


async def user_counts(user_ids: Iterable[int]) -> dict[int, UserCounts]:
    """followers_count, following_count and posts_count of each user, in three queries."""
    ids = sorted(set(user_ids))
    counts = {user_id: _zero() for user_id in ids}
    if not ids:
        return counts
    followers = await _grouped(Follow.filter(followee_id__in=ids), "followee_id")
    following = await _grouped(Follow.filter(follower_id__in=ids), "follower_id")
    posts = await _grouped(Post.filter(author_id__in=ids), "author_id")
    for user_id, entry in counts.items():
        entry["followers_count"] = followers.get(user_id, 0)
        entry["following_count"] = following.get(user_id, 0)
        entry["posts_count"] = posts.get(user_id, 0)
    return counts


def _number(value: Any) -> float | int | None:
    # PostgreSQL's AVG returns numeric (Decimal), which JSON cannot carry as such.
    if value is None:
        return None
    if isinstance(value, Decimal | float):
        return round(float(value), 2)
    return int(value)


async def job_stats() -> dict[str, Any]:
    """Totals, top locations, tag counts and a salary summary of all jobs: three queries."""
    conn = connections.get("default")
    # Standard SQL that SQLite and PostgreSQL both run; a boolean column is 0/1 in SQLite.
    _, totals = await conn.execute_query(
        "SELECT COUNT(*) AS total,"
        " COALESCE(SUM(CASE WHEN remote THEN 1 ELSE 0 END), 0) AS remote,"
        " COUNT(CASE WHEN salary_min IS NOT NULL OR salary_max IS NOT NULL THEN 1 END)"
        " AS with_salary,"
        " MIN(salary_min) AS min_salary, MAX(salary_max) AS max_salary,"
        " AVG(salary_min) AS avg_min, AVG(salary_max) AS avg_max"
        f" FROM {Job._meta.db_table}"
    )
    row = dict(totals[0])
    # Grouped by the case-folded key; one of the spellings in the group is shown.
    locations = await (
        Job.all().group_by("location_key").annotate(n=Count("id"), name=Min("location"))
        .order_by("-n", "location_key").limit(TOP_LOCATIONS).values_list("name", "n")
    )
    tags = await (
        JobTag.all().group_by("tag").annotate(n=Count("id"))
        .order_by("-n", "tag").limit(TOP_TAGS).values_list("tag", "n")
    )
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
