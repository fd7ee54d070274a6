"""Users with their followers, following and posts counts, each in one fixed statement.

The counts are correlated subqueries in the select list, not a join: each is one index range
count (``follows.followee_id``, the ``(follower_id, followee_id)`` unique index,
``posts.(author_id, ...)``), evaluated only for the rows the page returns, and no join can
multiply rows.  Before, a page of users cost its own query plus three ``GROUP BY`` queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from models.sql import Statement, native_datetimes
from models.user import User

_COUNTS = ("(SELECT COUNT(*) FROM follows f WHERE f.followee_id = u.id) AS followers_count,"
           " (SELECT COUNT(*) FROM follows f WHERE f.follower_id = u.id) AS following_count,"
           " (SELECT COUNT(*) FROM posts p WHERE p.author_id = u.id) AS posts_count")
_PUBLIC = f"SELECT u.id, u.username, u.created_at, {_COUNTS} FROM users u"
_ORDER = " ORDER BY u.created_at DESC, u.id DESC LIMIT $1"

USERS = Statement(_PUBLIC + _ORDER)
USERS_AFTER = Statement(_PUBLIC + " WHERE (u.created_at, u.id) < ($2, $3)" + _ORDER)
USER = Statement(_PUBLIC + " WHERE u.id = $1")
OWN = Statement(f"SELECT u.id, u.username, u.created_at, {_COUNTS}, u.email"
                " FROM users u WHERE u.id = $1")
EXISTS = Statement("SELECT id FROM users WHERE id = $1")

_to_datetime = User._meta.fields_map["created_at"].to_python_value


def _public(row: Sequence[Any], native: bool) -> dict[str, Any]:
    return {"id": row[0], "username": row[1],
            "created_at": row[2] if native else _to_datetime(row[2]),
            "followers_count": int(row[3]), "following_count": int(row[4]),
            "posts_count": int(row[5])}


async def users_page(limit: int, *,
                     after: tuple[datetime, int] | None = None) -> list[dict[str, Any]]:
    """Up to ``limit`` public profiles, newest first, older than ``after``'s
    ``(created_at, id)``."""
    rows = await (USERS.fetch(limit) if after is None else USERS_AFTER.fetch(limit, *after))
    native = native_datetimes()
    return [_public(row, native) for row in rows]


async def user_profile(user_id: int) -> dict[str, Any] | None:
    """One user's public profile (no email) with counts, or None."""
    rows = await USER.fetch(user_id)
    return _public(rows[0], native_datetimes()) if rows else None


async def own_profile(user_id: int) -> dict[str, Any] | None:
    """A user's own profile: the public one with the email last, or None."""
    rows = await OWN.fetch(user_id)
    if not rows:
        return None
    return {**_public(rows[0], native_datetimes()), "email": rows[0][6]}


async def user_exists(user_id: int) -> bool:
    return bool(await EXISTS.fetch(user_id))
