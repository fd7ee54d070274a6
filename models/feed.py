"""The feed's page queries: posts newest first with their authors, keyset-paginated.

Four fixed statements (every post or one author's, from the top or after a cursor) instead
of an ORM query: see :mod:`models.sql`.  The cursor is a row comparison,
``(created_at, id) < ($n, $m)``, which both databases match against the ``(created_at, id)``
and ``(author_id, created_at, id)`` indexes, so the ordered index scan starts at the cursor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from models.post import Post
from models.sql import Statement, native_datetimes

_SELECT = ("SELECT p.id, p.content, p.created_at, p.updated_at, p.author_id, u.username"
           " FROM posts p JOIN users u ON u.id = p.author_id")
_ORDER = " ORDER BY p.created_at DESC, p.id DESC LIMIT $1"

FEED = Statement(_SELECT + _ORDER)
FEED_AFTER = Statement(_SELECT + " WHERE (p.created_at, p.id) < ($2, $3)" + _ORDER)
AUTHOR_FEED = Statement(_SELECT + " WHERE u.username = $2" + _ORDER)
AUTHOR_FEED_AFTER = Statement(
    _SELECT + " WHERE u.username = $2 AND (p.created_at, p.id) < ($3, $4)" + _ORDER)

_STATEMENTS = {(False, False): FEED, (False, True): FEED_AFTER,
               (True, False): AUTHOR_FEED, (True, True): AUTHOR_FEED_AFTER}

_to_datetime = Post._meta.fields_map["created_at"].to_python_value


async def feed_rows(limit: int, *, author: str | None = None,
                    after: tuple[datetime, int] | None = None) -> list[dict[str, Any]]:
    """Up to ``limit`` posts newest first (by ``author``'s username, older than ``after``'s
    ``(created_at, id)``), in the API's post shape."""
    values: list[Any] = [limit]
    if author is not None:
        values.append(author)
    if after is not None:
        values += after
    rows = await _STATEMENTS[author is not None, after is not None].fetch(*values)
    if native_datetimes():
        return [{"id": r[0], "content": r[1], "created_at": r[2], "updated_at": r[3],
                 "author": {"id": r[4], "username": r[5]}} for r in rows]
    return [{"id": r[0], "content": r[1], "created_at": _to_datetime(r[2]),
             "updated_at": _to_datetime(r[3]), "author": {"id": r[4], "username": r[5]}}
            for r in rows]
