"""Password hashing (argon2) and signed, expiring bearer tokens (JWT, HS256).

Hashing and verifying are deliberately slow, so they run in a worker thread (at a lower CPU
priority than the event loop) and never block the event loop.  Token checks are cheap (one
HMAC), which is what lets the response cache call :func:`read_token` on every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ALGORITHM = "HS256"
T = TypeVar("T")
_hasher = PasswordHasher()


def _lower_priority() -> None:
    # Hashing is the only CPU-heavy work here; the event loops serving cache hits must win
    # the cores during a burst of sign-ins. Linux threads take their own nice value. At 19 a
    # hash gets about 1.5% of a core an event loop wants (at 10 it got 10%, which showed in
    # the hit p99 while hashes ran: bench/login_burst.py), and still ends within seconds on
    # a saturated machine, where SCHED_IDLE could starve it.
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        pass


_hashing = ThreadPoolExecutor(max_workers=4, thread_name_prefix="argon2",
                              initializer=_lower_priority)
"""Runs argon2 at a lower CPU priority; how many run at once is ``handlers.throttle``'s."""


async def _in_hashing_thread(function: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_hashing, function, *args)


async def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (salted; the parameters are stored in the hash)."""
    return await _in_hashing_thread(_hasher.hash, password)


def _verify(password_hash: str | None, password: str) -> bool:
    if password_hash is None:
        # Unknown user: spend the time of a real check so timing does not reveal usernames.
        _verify(_dummy_hash(), password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@cache
def _dummy_hash() -> str:
    return _hasher.hash("no such user")


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; None (unknown user) never matches."""
    return await _in_hashing_thread(_verify, password_hash, password)


@cache
def signing_key(secret: str) -> bytes:
    """The HMAC key: a SHA-256 of ``SECRET_KEY``, so every configured secret gives a full-length
    key (PyJWT warns about HMAC keys shorter than the digest)."""
    return hashlib.sha256(b"sanic-cached-api/token:" + secret.encode()).digest()


def issue_token(user_id: int, secret: str, ttl_seconds: int, *, now: int | None = None) -> str:
    """A token for ``user_id`` (``sub``), issued ``now`` (``iat``), valid ``ttl_seconds``."""
    issued = int(time.time()) if now is None else now
    claims = {"sub": str(user_id), "iat": issued, "exp": issued + ttl_seconds}
    return jwt.encode(claims, signing_key(secret), algorithm=ALGORITHM)


def read_token(token: str, secret: str) -> int | None:
    """The user id of a valid, unexpired token, else None."""
    # A JWT is ASCII; headers may carry anything (Sanic keeps undecodable bytes as surrogates).
    if not token or len(token) > 2048 or not token.isascii():
        return None
    try:
        claims = jwt.decode(token, signing_key(secret), algorithms=[ALGORITHM],
                            options={"require": ["sub", "iat", "exp"]})
    except jwt.PyJWTError:
        return None
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject.isascii() or not subject.isdigit():
        return None
    user_id = int(subject)
    return user_id if 1 <= user_id <= 2**31 - 1 else None
