"""Tokens, passwords and ``identify`` without a server or a database."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import jwt
import pytest

from handlers.auth import bearer_token, identify
from handlers.security import (
    hash_password,
    issue_token,
    read_token,
    signing_key,
    verify_password,
)

SECRET = "unit-test-secret-0123456789abcdef"


def _request(authorization: str | None) -> Any:
    headers = {} if authorization is None else {"authorization": authorization}
    settings = SimpleNamespace(secret_key=SECRET)
    return SimpleNamespace(headers=headers, app=SimpleNamespace(ctx=SimpleNamespace(
        settings=settings)))


def test_token_round_trip() -> None:
    token = issue_token(42, SECRET, 60)
    assert read_token(token, SECRET) == 42
    claims = jwt.decode(token, signing_key(SECRET), algorithms=["HS256"])
    assert claims["sub"] == "42"
    assert claims["exp"] - claims["iat"] == 60


def _signed(claims: dict[str, Any], key: bytes | str = signing_key(SECRET),
            algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


NOW = int(time.time())


@pytest.mark.parametrize(("token", "why"), [
    (issue_token(42, SECRET, 60, now=NOW - 3600), "expired"),
    (issue_token(42, "a-different-secret-0123456789", 60), "other key"),
    (_signed({"sub": "42", "iat": NOW, "exp": NOW + 60}, SECRET), "raw secret as key"),
    (_signed({"sub": "42", "iat": NOW}), "no exp"),
    (_signed({"sub": "42", "exp": NOW + 60}), "no iat"),
    (_signed({"iat": NOW, "exp": NOW + 60}), "no sub"),
    (_signed({"sub": "abc", "iat": NOW, "exp": NOW + 60}), "sub not an id"),
    (_signed({"sub": "0", "iat": NOW, "exp": NOW + 60}), "sub zero"),
    (_signed({"sub": str(2**40), "iat": NOW, "exp": NOW + 60}), "sub out of range"),
    (_signed({"sub": "42", "iat": NOW, "exp": NOW + 60}, signing_key(SECRET) * 2, "HS512"),
     "other algorithm"),
    (jwt.encode({"sub": "42", "iat": NOW, "exp": NOW + 60}, None, algorithm="none"), "none"),
    ("", "empty"),
    ("not-a-jwt", "garbage"),
    ("é.é.é", "non-ascii"),
    ("\udcff\udcfe", "undecodable header bytes"),
    ("a" * 3000, "too long"),
])
def test_bad_tokens_are_refused(token: str, why: str) -> None:
    assert read_token(token, SECRET) is None, why


@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    ("", None),
    ("Bearer", None),
    ("Basic dXNlcjpwYXNz", None),
    ("Bearer abc", "abc"),
    ("bearer  abc ", "abc"),
])
def test_bearer_token(header: str | None, expected: str | None) -> None:
    assert bearer_token(_request(header)) == expected


def test_identify_returns_the_user_id_as_str() -> None:
    assert identify(_request(f"Bearer {issue_token(7, SECRET, 60)}")) == "7"
    assert identify(_request(f"Bearer {issue_token(7, SECRET, 60, now=NOW - 120)}")) is None
    assert identify(_request(None)) is None


async def test_password_hash_and_verify() -> None:
    hashed = await hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert "correct horse" not in hashed
    assert await verify_password(hashed, "correct horse")
    assert not await verify_password(hashed, "wrong horse")
    assert not await verify_password(None, "correct horse")
    assert not await verify_password("not-a-hash", "correct horse")


async def test_hashing_runs_below_the_event_loops_priority() -> None:
    """During a burst of sign-ins the cores must go to the loops that serve cache hits."""
    import os
    import threading

    from handlers import security

    hashed = await security.hash_password("correct horse battery")
    assert await security.verify_password(hashed, "correct horse battery")
    threads = [t for t in threading.enumerate() if t.name.startswith("argon2")]
    assert threads
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert all(os.getpriority(os.PRIO_PROCESS, t.native_id) == 19 > loop_nice for t in threads)
