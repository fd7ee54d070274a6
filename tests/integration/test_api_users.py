"""Users, counts and the follow graph over HTTP."""

from __future__ import annotations

import logging

import pytest

from models.user import Follow, User
from tests.integration.api_support import assert_error, register
from tests.server import Client


async def test_users_list_with_counts(client: Client) -> None:
    alice, alice_auth = await register(client, "alice")
    bob, bob_auth = await register(client, "bob")
    carol, carol_auth = await register(client, "carol")
    for _ in range(3):
        await client.post("/api/posts", json={"content": "hi"}, headers=alice_auth)
    await client.post("/api/posts", json={"content": "hi"}, headers=carol_auth)
    await client.post(f"/api/users/{alice['id']}/follow", headers=bob_auth)
    await client.post(f"/api/users/{alice['id']}/follow", headers=carol_auth)
    await client.post(f"/api/users/{carol['id']}/follow", headers=alice_auth)

    response = await client.get("/api/users/list")
    assert response.status == 200
    items = response.json["items"]
    assert [item["username"] for item in items] == ["carol", "bob", "alice"]
    counts = {item["username"]: (item["followers_count"], item["following_count"],
                                 item["posts_count"]) for item in items}
    assert counts == {"alice": (2, 1, 3), "bob": (0, 1, 0), "carol": (1, 1, 1)}
    assert all("email" not in item for item in items)
    assert response.json["next_cursor"] is None

    me = (await client.get("/api/auth/me", headers=alice_auth)).json
    assert (me["followers_count"], me["following_count"], me["posts_count"]) == (2, 1, 3)

    profile = await client.get(f"/api/users/{alice['id']}")
    assert profile.status == 200
    assert profile.json == next(item for item in items if item["username"] == "alice")


async def test_users_list_pagination_is_stable(client: Client) -> None:
    for i in range(7):
        await User.create(username=f"user{i}", email=f"user{i}@example.com", password_hash="-")
    seen: list[str] = []
    response = await client.get("/api/users/list", params={"limit": 3})
    seen += [item["username"] for item in response.json["items"]]
    cursor = response.json["next_cursor"]
    while cursor:
        await register(client, f"late{len(seen)}")
        response = await client.get("/api/users/list", params={"limit": 3, "cursor": cursor})
        assert response.status == 200
        seen += [item["username"] for item in response.json["items"]]
        cursor = response.json["next_cursor"]
    assert seen == [f"user{i}" for i in reversed(range(7))]
    assert_error(await client.get("/api/users/list", params={"limit": "101"}), 400, "limit:")
    assert_error(await client.get("/api/users/list", params={"cursor": "@@"}), 400, "cursor:")


async def test_counts_take_a_fixed_number_of_queries(client: Client,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Three grouped count queries per page, whatever the page size: never one per user."""
    await User.bulk_create([User(username=f"user{i}", email=f"user{i}@example.com",
                                 password_hash="-") for i in range(12)])

    async def queries_for(limit: int) -> int:
        with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):
            caplog.clear()
            response = await client.get("/api/users/list", params={"limit": limit})
            assert len(response.json["items"]) == limit
            return sum(record.name == "tortoise.db_client" for record in caplog.records)

    small, large = await queries_for(2), await queries_for(12)
    assert small == large
    assert 1 <= large <= 5


async def test_follow_and_unfollow(client: Client) -> None:
    alice, alice_auth = await register(client, "alice")
    bob, _ = await register(client, "bob")
    url = f"/api/users/{bob['id']}/follow"

    first = await client.post(url, headers=alice_auth)
    assert first.status == 201
    assert first.json["following"] is True
    assert first.json["user"]["id"] == bob["id"]
    assert first.json["user"]["followers_count"] == 1
    again = await client.post(url, headers=alice_auth)
    assert again.status == 200
    assert again.json["user"]["followers_count"] == 1
    assert await Follow.filter(follower_id=alice["id"], followee_id=bob["id"]).count() == 1

    for _ in range(2):
        gone = await client.delete(url, headers=alice_auth)
        assert gone.status == 204
    assert await Follow.all().count() == 0

    assert_error(await client.post(f"/api/users/{alice['id']}/follow", headers=alice_auth), 400,
                 "cannot follow themselves")
    assert_error(await client.delete(f"/api/users/{alice['id']}/follow", headers=alice_auth), 400)
    for user_id in ("999", str(2**31), str(10**40)):
        assert_error(await client.post(f"/api/users/{user_id}/follow", headers=alice_auth), 404,
                     "user not found")
        assert_error(await client.get(f"/api/users/{user_id}"), 404, "user not found")
    assert_error(await client.post(f"/api/users/{alice['id']}/follow"), 401)
    assert_error(await client.delete(f"/api/users/{alice['id']}/follow"), 401)
    assert await Follow.all().count() == 0
