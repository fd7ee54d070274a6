"""Users with their counts: one statement each, and the same bytes as the ORM queries before.

The expected bytes come from the ORM (``User.values`` plus a count per user) on the same data,
on SQLite and PostgreSQL.  Before, a page cost its own query plus three ``GROUP BY`` queries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from handlers.pagination import Cursor
from handlers.responses import dumps
from handlers.security import issue_token
from models import profiles
from models.post import Post
from models.user import Follow, User
from tests.integration.api_support import assert_error, register
from tests.integration.statements import statements
from tests.server import Client

SECRET = "test-secret-key-0123456789abcdef"  # tests/conftest.py's make_settings
MOMENT = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def _sql(*statements_: profiles.Statement) -> set[str]:
    return {s.postgres for s in statements_} | {s.sqlite for s in statements_}


async def _orm_profile(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "username": user["username"], "created_at": user["created_at"],
            "followers_count": await Follow.filter(followee_id=user["id"]).count(),
            "following_count": await Follow.filter(follower_id=user["id"]).count(),
            "posts_count": await Post.filter(author_id=user["id"]).count()}


async def _orm_page(limit: int, cursor: str | None) -> bytes:
    queryset = User.all()
    if cursor is not None:
        queryset = queryset.filter(Cursor.decode(cursor).older())
    rows = await queryset.order_by("-created_at", "-id").limit(limit + 1).values(
        "id", "username", "created_at")
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = Cursor(rows[-1]["created_at"], rows[-1]["id"]).encode()
    return dumps({"items": [await _orm_profile(row) for row in rows],
                  "next_cursor": next_cursor})


async def _seed() -> list[User]:
    """Seven users, four created at the same moment; follows and posts in uneven numbers."""
    users = [User(username=f"user{i}", email=f"user{i}@example.com", password_hash="-",
                  **({"created_at": MOMENT} if i < 4 else {})) for i in range(7)]
    await User.bulk_create(users)
    users = await User.all().order_by("id")
    for i, follower in enumerate(users):
        for followee in users[i + 1:i + 1 + i % 4]:
            await Follow.create(follower_id=follower.id, followee_id=followee.id)
    await Post.bulk_create([Post(author_id=users[i % 3].id, content=f"p{i}") for i in range(8)])
    return users


@pytest.mark.parametrize("limit", [1, 3, 7, 20])
async def test_users_list_is_one_statement_with_the_orm_bytes(
        client: Client, caplog: pytest.LogCaptureFixture, limit: int) -> None:
    await _seed()
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        with statements(caplog) as sent:
            response = await client.get("/api/users/list", params=params)
        assert response.status == 200, response.text
        assert len(sent) == 1 and set(sent) <= _sql(profiles.USERS, profiles.USERS_AFTER), sent
        assert response.content == await _orm_page(limit, cursor)
        pages += 1
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
    assert pages == max(1, -(-7 // limit))  # a last page exactly full has no next cursor
    assert_error(await client.get("/api/users/list", params={"cursor": "@@"}), 400, "cursor:")


async def test_user_and_me_are_one_statement_with_the_orm_bytes(
        client: Client, caplog: pytest.LogCaptureFixture) -> None:
    users = await _seed()
    for user in users:
        with statements(caplog) as sent:
            response = await client.get(f"/api/users/{user.id}")
        assert sent and set(sent) <= _sql(profiles.USER) and len(sent) == 1, sent
        assert response.content == dumps(await _orm_profile(
            {"id": user.id, "username": user.username, "created_at": user.created_at}))
    assert_error(await client.get("/api/users/999"), 404, "user not found")

    alice, auth = await register(client, "alice")
    await Follow.create(follower_id=users[0].id, followee_id=alice["id"])
    await Post.create(author_id=alice["id"], content="hi")
    with statements(caplog) as sent:
        response = await client.get("/api/auth/me", headers=auth)
    assert len(sent) == 1 and set(sent) <= _sql(profiles.OWN), sent
    me = await User.get(id=alice["id"])
    expected = {**await _orm_profile({"id": me.id, "username": me.username,
                                      "created_at": me.created_at}), "email": me.email}
    assert response.content == dumps(expected)
    assert expected["followers_count"] == expected["posts_count"] == 1

    gone = client.bearer(issue_token(10_000, SECRET, 60))  # a valid token, nobody behind it
    assert_error(await client.get("/api/auth/me", headers=gone), 401, "invalid or expired")
    assert_error(await client.get("/api/auth/me"), 401, "missing bearer token")


async def test_follow_reads_the_counts_in_one_statement(
        client: Client, caplog: pytest.LogCaptureFixture) -> None:
    users = await _seed()
    _, auth = await register(client, "alice")
    target = users[5]
    for status in (201, 200):
        with statements(caplog) as sent:
            response = await client.post(f"/api/users/{target.id}/follow", headers=auth)
        assert response.status == status, response.text
        assert not any("GROUP BY" in s for s in sent), sent
        assert sent[-1] in _sql(profiles.USER), sent
        profile = await _orm_profile({"id": target.id, "username": target.username,
                                      "created_at": target.created_at})
        assert response.content == dumps({"following": True, "user": profile})
