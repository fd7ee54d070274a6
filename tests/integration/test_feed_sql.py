"""The feed's fixed statements answer with the same bytes as the ORM query they replace.

The expected bytes are computed here with the ORM query the feed used before
(``Post.values`` with the author join, the cursor as ``Q`` objects), on the same data, on
SQLite and on PostgreSQL.  Each page must also cost exactly one statement, one of
``models.feed``'s, so a regression to a built query fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handlers.pagination import Cursor
from handlers.responses import dumps
from handlers.serialize import POST_FIELDS, post_out
from models import feed
from models.post import Post
from models.user import User
from tests.integration.api_support import assert_error
from tests.integration.statements import statements
from tests.server import Client

FEED_SQL = {s.postgres for s in (feed.FEED, feed.FEED_AFTER, feed.AUTHOR_FEED,
                                 feed.AUTHOR_FEED_AFTER)}
FEED_SQL |= {s.sqlite for s in (feed.FEED, feed.FEED_AFTER, feed.AUTHOR_FEED,
                                feed.AUTHOR_FEED_AFTER)}
MOMENT = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


async def _orm_page(limit: int, cursor: str | None = None,
                    author: str | None = None) -> bytes:
    """The feed page as the ORM query of the previous handler built it."""
    queryset = Post.all()
    if author is not None:
        queryset = queryset.filter(author__username=author)
    if cursor is not None:
        queryset = queryset.filter(Cursor.decode(cursor).older())
    rows = await queryset.order_by("-created_at", "-id").limit(limit + 1).values(*POST_FIELDS)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = Cursor(rows[-1]["created_at"], rows[-1]["id"]).encode()
    return dumps({"items": [post_out(row) for row in rows], "next_cursor": next_cursor})


async def _seed() -> None:
    """Ties on created_at (also across page boundaries), whole seconds and microseconds,
    timestamps a microsecond apart, two authors, non-ASCII content."""
    alice = await User.create(username="alice", email="a@example.com", password_hash="-")
    bob = await User.create(username="bøb", email="b@example.com", password_hash="-")
    moments = [MOMENT] * 5 + [MOMENT + timedelta(microseconds=1)] * 2
    moments += [MOMENT + timedelta(seconds=1, microseconds=500_000), MOMENT - timedelta(days=1)]
    moments += [MOMENT + timedelta(minutes=i) for i in range(4)]
    posts = [Post(author_id=(alice if i % 3 else bob).id, content=f"post {i} ✨ \"q\"",
                  created_at=moment) for i, moment in enumerate(moments)]
    await Post.bulk_create(posts)
    await Post.create(author_id=alice.id, content="now")  # created_at from the clock


async def _walk(client: Client, caplog: pytest.LogCaptureFixture, limit: int,
                author: str | None = None) -> int:
    """Page through the whole feed, comparing each page's bytes; returns the page count."""
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        if author is not None:
            params["author"] = author
        with statements(caplog) as sent:
            response = await client.get("/api/posts", params=params)
        assert response.status == 200, response.text
        assert sent and set(sent) <= FEED_SQL and len(sent) == 1, sent
        assert response.content == await _orm_page(limit, cursor, author)
        pages += 1
        cursor = response.json["next_cursor"]
        if cursor is None:
            return pages


@pytest.mark.parametrize("limit", [1, 2, 3, 13, 14, 100])
async def test_feed_pages_are_the_orm_bytes(client: Client, caplog: pytest.LogCaptureFixture,
                                            limit: int) -> None:
    await _seed()
    total = await Post.all().count()
    pages = await _walk(client, caplog, limit)
    # A last page exactly full (limit 2, 7 and 14 posts) has no next cursor.
    assert pages == max(1, -(-total // limit))
    await _walk(client, caplog, limit, author="alice")
    await _walk(client, caplog, limit, author="bøb")


async def test_feed_edges_are_the_orm_bytes(client: Client,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """Cursors inside and around equal timestamps, past the end, unknown authors; a bad
    cursor is the same 400 as before and sends no statement."""
    await _seed()
    tie = await Post.filter(created_at=MOMENT).order_by("-id").values_list("id", flat=True)
    cursors = [Cursor(MOMENT, tie[2]).encode(),  # inside a run of equal timestamps
               Cursor(MOMENT, tie[0] + 1000).encode(),  # before the whole run
               Cursor(MOMENT + timedelta(microseconds=1), 1).encode(),
               Cursor(MOMENT - timedelta(days=1), 1).encode(),  # nothing older: empty page
               Cursor(datetime(2100, 1, 1, tzinfo=UTC), 1).encode()]
    for cursor in cursors:
        for author in (None, "alice", "nobody"):
            params = {"cursor": cursor, "limit": "2", **({"author": author} if author else {})}
            with statements(caplog) as sent:
                response = await client.get("/api/posts", params=params)
            assert response.status == 200, response.text
            assert len(sent) == 1 and set(sent) <= FEED_SQL, sent
            assert response.content == await _orm_page(2, cursor, author)
    assert (await client.get("/api/posts")).content == await _orm_page(20)
    empty = await client.get("/api/posts", params={"author": "nobody"})
    assert empty.content == b'{"items":[],"next_cursor":null}'

    for cursor in ("garbage", Cursor(MOMENT, 1).encode()[:-2] + "!!"):
        with statements(caplog) as sent:
            response = await client.get("/api/posts", params={"cursor": cursor})
        assert_error(response, 400, "cursor:")
        assert response.content == (b'{"error":{"status":400,'
                                    b'"message":"cursor: is not a valid cursor"}}')
        assert sent == []
