"""Accounts and tokens over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import jwt
import pytest

from handlers.schemas import USERNAME_MAX_LENGTH
from handlers.security import issue_token, signing_key
from models.user import User
from settings import Settings
from tests.integration.api_support import PASSWORD, assert_error, register
from tests.server import Client


async def test_register_login_and_me(client: Client,
                                     make_settings: Callable[..., Settings]) -> None:
    response = await client.post("/api/auth/register", json={
        "username": "alice", "email": "Alice@Example.com", "password": PASSWORD})
    assert response.status == 201
    user = response.json["user"]
    assert user["username"] == "alice"
    assert user["email"] == "alice@example.com"
    assert {user["followers_count"], user["following_count"], user["posts_count"]} == {0}
    assert "password" not in response.text and "argon2" not in response.text

    stored = await User.get(id=user["id"])
    assert stored.password_hash.startswith("$argon2id$")

    login = await client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert login.status == 200
    assert set(login.json) == {"token"}

    for token in (response.json["token"], login.json["token"]):
        me = await client.get("/api/auth/me", headers=client.bearer(token))
        assert me.status == 200
        assert me.json["id"] == user["id"]
        assert me.json["email"] == "alice@example.com"
        assert me.json["posts_count"] == 0

    settings = make_settings()
    claims = jwt.decode(login.json["token"], signing_key(settings.secret_key),
                        algorithms=["HS256"])
    assert claims["sub"] == str(user["id"])
    assert claims["exp"] - claims["iat"] == settings.token_ttl_seconds


async def test_duplicate_username_or_email_is_409(client: Client) -> None:
    await register(client, "alice")
    for field, value in (("username", "alice"), ("email", "ALICE@example.com")):
        body = {"username": "other", "email": "other@example.com", "password": PASSWORD}
        body[field] = value
        response = await client.post("/api/auth/register", json=body)
        assert_error(response, 409, f"{field}: is already taken")
    assert await User.all().count() == 1

    # Concurrent registrations of one name: exactly one wins.
    bodies = [{"username": "race", "email": f"race{i}@example.com", "password": PASSWORD}
              for i in range(4)]
    responses = await asyncio.gather(*(client.post("/api/auth/register", json=body)
                                       for body in bodies))
    statuses = sorted(response.status for response in responses)
    assert statuses == [201, 409, 409, 409]
    for response in responses:
        if response.status == 409:
            assert_error(response, 409, "username: is already taken")


async def test_duplicate_caught_from_the_database(client: Client,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """When the pre-check misses a clash (a concurrent registration won), the unique index
    still refuses the row and the IntegrityError becomes a 409 naming the field."""
    import handlers.auth

    real = handlers.auth._taken_field
    calls: list[str] = []

    async def stale_check(username: str, email: str) -> str | None:
        calls.append(username)
        return None if len(calls) == 1 else await real(username, email)

    await register(client, "taken")
    monkeypatch.setattr(handlers.auth, "_taken_field", stale_check)
    response = await client.post("/api/auth/register", json={
        "username": "other", "email": "TAKEN@example.com", "password": PASSWORD})
    assert_error(response, 409, "email: is already taken")
    assert len(calls) == 2


INVALID_REGISTRATIONS: list[tuple[dict[str, object], list[str]]] = [
    ({"email": "a@example.com", "password": PASSWORD}, ["username: is required"]),
    ({"username": "ab", "email": "a@example.com", "password": PASSWORD}, ["username: must be"]),
    ({"username": "bad name", "email": "a@example.com", "password": PASSWORD},
     ["username: must be"]),
    ({"username": "dave", "email": "not-an-email", "password": PASSWORD},
     ["email: must be an email address"]),
    ({"username": "dave", "email": "a@example.com", "password": "short"},
     ["password: must be at least 8 characters"]),
    ({"username": "dave", "email": "a@example.com", "password": "x" * 129},
     ["password: must be at most 128 characters"]),
    ({"username": 123, "email": "a@example.com", "password": PASSWORD}, ["username:"]),
    ({"username": "dave", "email": "a@example.com", "password": PASSWORD, "admin": True},
     ["admin: is not an accepted field"]),
    ({"username": "dave", "email": "a@exam\x00ple.com", "password": PASSWORD}, ["email:"]),
]


async def test_register_validation_names_the_field(client: Client) -> None:
    for body, fragments in INVALID_REGISTRATIONS:
        response = await client.post("/api/auth/register", json=body)
        assert_error(response, 400, *fragments)
    assert await User.all().count() == 0


MALFORMED_BODIES = [
    (b"{not json", "body: must be valid JSON"),
    (b"", "body: must be valid JSON"),
    (b"[1, 2]", "body: must be a JSON object"),
    (b'"text"', "body: must be a JSON object"),
    (b'{"username": "\\ud800", "password": "x"}', "body: must be valid JSON"),
    (b'{"username": "a", "password": 1e400}', "body: must be valid JSON"),
]


async def test_malformed_and_oversized_bodies(client: Client) -> None:
    for content, fragment in MALFORMED_BODIES:
        response = await client.post("/api/auth/login", content=content,
                                     headers={"content-type": "application/json"})
        assert_error(response, 400, fragment)
    too_large = await client.post("/api/auth/register", content=b"x" * 2_000_000,
                                  headers={"content-type": "application/json"})
    assert_error(too_large, 413)


async def test_bad_credentials_and_tokens_are_401(
        client: Client, make_settings: Callable[..., Settings]) -> None:
    user, _ = await register(client, "frank")
    secret = make_settings().secret_key
    now = int(time.time())
    expired = issue_token(user["id"], secret, 60, now=now - 3600)
    forged = issue_token(user["id"], "another-secret-key-0123456789", 60)
    unsigned = jwt.encode({"sub": str(user["id"]), "iat": now, "exp": now + 60}, key=None,
                          algorithm="none")
    cases = {
        "no header": {},
        "empty bearer": {"Authorization": "Bearer"},
        "basic scheme": {"Authorization": "Basic Zm9vOmJhcg=="},
        "garbage": {"Authorization": "Bearer not.a.token"},
        "expired": {"Authorization": f"Bearer {expired}"},
        "wrong key": {"Authorization": f"Bearer {forged}"},
        "alg none": {"Authorization": f"Bearer {unsigned}"},
    }
    for name, headers in cases.items():
        response = await client.get("/api/auth/me", headers=headers)
        assert_error(response, 401)
        assert response.headers["www-authenticate"] == "Bearer", name

    for body in ({"username": "frank", "password": "wrong-password"},
                 {"username": "nobody", "password": PASSWORD}):
        response = await client.post("/api/auth/login", json=body)
        assert_error(response, 401, "invalid username or password")
        assert response.headers["www-authenticate"] == "Bearer"

    # A valid token whose user is gone (deleted behind the API's back, so a write is asked:
    # reads may legitimately come from the response cache).
    valid = client.bearer(issue_token(user["id"], secret, 60))
    await User.filter(id=user["id"]).delete()
    assert_error(await client.post("/api/posts", json={"content": "x"}, headers=valid), 401)


async def test_login_with_a_username_longer_than_any_account_is_401(client: Client) -> None:
    """Login accepts up to 254 characters (an email-sized field) but a username is at most 32:
    a longer one cannot exist, so it is an unknown user (401), not a database error."""
    assert User._meta.fields_map["username"].max_length == USERNAME_MAX_LENGTH
    await register(client, "grace")
    for length in (USERNAME_MAX_LENGTH + 1, 64, 254):
        response = await client.post("/api/auth/login",
                                     json={"username": "g" * length, "password": PASSWORD})
        assert_error(response, 401, "invalid username or password")
        assert response.headers["www-authenticate"] == "Bearer"
    too_long = await client.post("/api/auth/login",
                                 json={"username": "g" * 255, "password": PASSWORD})
    assert_error(too_long, 400, "username: must be at most 254 characters")
