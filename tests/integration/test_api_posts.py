"""The feed over HTTP: CRUD, ownership, validation and keyset pagination."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from models.post import Post
from tests.integration.api_support import assert_error, register
from tests.server import Client


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def _page_ids(client: Client, url: str, **params: Any) -> tuple[list[int], str | None]:
    response = await client.get(url, params=params)
    assert response.status == 200, response.text
    return [item["id"] for item in response.json["items"]], response.json["next_cursor"]


async def test_post_lifecycle(client: Client) -> None:
    alice, auth = await register(client, "alice")
    created = await client.post("/api/posts", json={"content": "first post ✨"}, headers=auth)
    assert created.status == 201
    post = created.json
    assert post["content"] == "first post ✨"
    assert post["author"] == {"id": alice["id"], "username": "alice"}
    assert post["created_at"].endswith("Z")

    fetched = await client.get(f"/api/posts/{post['id']}")
    assert fetched.status == 200
    assert fetched.json == post

    edited = await client.patch(f"/api/posts/{post['id']}", json={"content": "edited"},
                                headers=auth)
    assert edited.status == 200
    assert edited.json["content"] == "edited"
    assert edited.json["created_at"] == post["created_at"]
    assert edited.json["updated_at"] >= post["updated_at"]
    assert (await Post.get(id=post["id"])).content == "edited"

    deleted = await client.delete(f"/api/posts/{post['id']}", headers=auth)
    assert deleted.status == 204
    assert deleted.content == b""
    assert not await Post.filter(id=post["id"]).exists()
    assert_error(await client.delete(f"/api/posts/{post['id']}", headers=auth), 404)


async def test_post_errors(client: Client) -> None:
    """403 for another author's post, 401 without a token, 404 for any id that is not there."""
    _, alice = await register(client, "alice")
    _, bob = await register(client, "bob")
    post = (await client.post("/api/posts", json={"content": "mine"}, headers=alice)).json
    assert_error(await client.patch(f"/api/posts/{post['id']}", json={"content": "x"},
                                    headers=bob), 403, "author")
    assert_error(await client.delete(f"/api/posts/{post['id']}", headers=bob), 403)
    assert (await Post.get(id=post["id"])).content == "mine"
    for method in ("POST", "PATCH", "DELETE"):
        url = "/api/posts" if method == "POST" else f"/api/posts/{post['id']}"
        response = await client.request(method, url, json={"content": "x"})
        assert_error(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    for post_id in ("999", "0", "-1", str(2**31), str(10**30)):
        assert_error(await client.get(f"/api/posts/{post_id}"), 404, "post not found")
        assert_error(await client.patch(f"/api/posts/{post_id}", json={"content": "x"},
                                        headers=alice), 404)
        assert_error(await client.delete(f"/api/posts/{post_id}", headers=alice), 404)
    assert_error(await client.get("/api/posts/abc"), 404)


async def test_content_validation(client: Client) -> None:
    _, auth = await register(client, "alice")
    cases: list[tuple[Any, str]] = [
        ({}, "content: is required"),
        ({"content": ""}, "content: must be at least 1 characters"),
        ({"content": "   \n"}, "content: must not be blank"),
        ({"content": "x" * 2001}, "content: must be at most 2000 characters"),
        ({"content": 42}, "content:"),
        ({"content": ["a"]}, "content:"),
        ({"content": None}, "content:"),
        ({"content": "nul \x00 byte"}, "content: must not contain NUL"),
        ({"content": "ok", "author_id": 5}, "author_id: is not an accepted field"),
    ]
    for body, message in cases:
        assert_error(await client.post("/api/posts", json=body, headers=auth), 400, message)
    assert await Post.all().count() == 0
    # Exactly 2,000 characters, counted as characters, not bytes.
    for content in ("x" * 2000, "é" * 2000, "🙂" * 2000):
        response = await client.post("/api/posts", json={"content": content}, headers=auth)
        assert response.status == 201, response.text
        assert response.json["content"] == content


async def test_feed_pagination_is_stable_while_posts_arrive(client: Client) -> None:
    _, auth = await register(client, "alice")
    for i in range(25):
        await client.post("/api/posts", json={"content": f"post {i}"}, headers=auth)
    expected = [row.id for row in await Post.all().order_by("-created_at", "-id")]

    seen: list[int] = []
    ids, cursor = await _page_ids(client, "/api/posts", limit=10)
    seen += ids
    while cursor is not None:
        # New posts land before the first page, never inside the pages still to come.
        await client.post("/api/posts", json={"content": "breaking news"}, headers=auth)
        ids, cursor = await _page_ids(client, "/api/posts", limit=10, cursor=cursor)
        seen += ids
    assert seen == expected
    assert len(set(seen)) == 25

    default_page, _ = await _page_ids(client, "/api/posts")
    assert len(default_page) == 20


async def test_pagination_breaks_created_at_ties_by_id(client: Client) -> None:
    alice, _ = await register(client, "alice")
    moment = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    await Post.bulk_create([Post(author_id=alice["id"], content=f"tie {i}", created_at=moment)
                            for i in range(5)])
    seen: list[int] = []
    ids, cursor = await _page_ids(client, "/api/posts", limit=2)
    seen += ids
    while cursor:
        ids, cursor = await _page_ids(client, "/api/posts", limit=2, cursor=cursor)
        seen += ids
    assert seen == sorted(seen, reverse=True)
    assert len(set(seen)) == 5


async def test_feed_by_author_and_bad_parameters(client: Client) -> None:
    _, alice = await register(client, "alice")
    _, bob = await register(client, "bob")
    for i in range(3):
        await client.post("/api/posts", json={"content": f"a{i}"}, headers=alice)
        await client.post("/api/posts", json={"content": f"b{i}"}, headers=bob)
    response = await client.get("/api/posts", params={"author": "bob"})
    assert [item["content"] for item in response.json["items"]] == ["b2", "b1", "b0"]
    assert {item["author"]["username"] for item in response.json["items"]} == {"bob"}
    empty = await client.get("/api/posts", params={"author": "nobody"})
    assert empty.json == {"items": [], "next_cursor": None}

    for limit in ("abc", "0", "101", "-1", "1.5", "１０", "99999999999999999999"):
        assert_error(await client.get("/api/posts", params={"limit": limit}), 400, "limit:")
    bad_cursors = ["garbage", "!!!", "x" * 500, "e30", _b64(b"[]"), _b64(b'["x", 1]'),
                   _b64(b'["2025-01-01T00:00:00", 1]'),  # no time zone
                   _b64(b'["2025-01-01T00:00:00+00:00", 99999999999]'),
                   _b64(b'["2025-01-01T00:00:00+00:00", true]'),
                   _b64(b'["2025-01-01T00:00:00+00:00", 1, 2]'),
                   _b64(b'["0001-01-01T00:00:00+01:00", 1]')]
    for cursor in bad_cursors:
        assert_error(await client.get("/api/posts", params={"cursor": cursor}), 400, "cursor:")
