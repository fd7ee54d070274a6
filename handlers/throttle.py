"""Login and registration as a denial of service, bounded.

Each login or registration runs argon2 (64 MiB of memory, most of a core for tens of ms) in a
thread. Unbounded, 200 concurrent logins on a 2-core machine pin gigabytes and starve the
event loop that serves cache hits. Two guards, per worker:

- ``HashGate``: at most ``AUTH_MAX_CONCURRENT_HASHES`` hashes run at once and at most
  ``AUTH_MAX_WAITING_HASHES`` requests queue for one; past that the answer is 429 with
  ``Retry-After``, before any hashing.
- ``AttemptLimits``: moving-window attempt limits (the ``limits`` library, in memory) per client
  address (``LOGIN_RATE_PER_CLIENT``, login and registration) and per username
  (``LOGIN_RATE_PER_USERNAME``, login: guessing one account's password from many addresses).
  The client address is Sanic's ``remote_addr`` when ``PROXIES_COUNT`` or ``FORWARDED_SECRET``
  tells it which forwarded headers to trust (behind Render's or Railway's proxy every peer is
  the proxy), else the peer address.

Limits are per worker process: with ``WORKERS`` = N a client gets up to N times the rate.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sanic import Request
from sanic.exceptions import HTTPException

__all__ = ["AttemptLimits", "HashGate", "TooManyRequests", "client_address"]


class TooManyRequests(HTTPException):
    """429 with ``Retry-After`` (whole seconds, at least 1)."""

    status_code = 429
    quiet = True

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, headers={"retry-after": str(max(1, math.ceil(retry_after)))})


class HashGate:
    """Bounds the argon2 work of one worker: ``async with gate.slot(): <hash>``."""

    def __init__(self, concurrent: int, waiting: int) -> None:
        self.concurrent = concurrent
        self.waiting = waiting
        self._semaphore: asyncio.Semaphore | None = None
        self._queued = 0
        self.refused = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._semaphore is None:  # created in the worker's loop, on first use
            self._semaphore = asyncio.Semaphore(self.concurrent)
        semaphore = self._semaphore
        if semaphore.locked() and self._queued >= self.waiting:
            self.refused += 1
            raise TooManyRequests("too many sign-ins in progress; retry shortly", 1)
        self._queued += 1
        try:
            await semaphore.acquire()
        finally:
            self._queued -= 1
        try:
            yield
        finally:
            semaphore.release()


class AttemptLimits:
    """Per-client and per-username attempt limits (moving window, in memory).

    A refused identity stays refused until the oldest attempt in its window expires (a refusal
    adds no attempt), so that time is remembered and the refusals before it are answered from
    a dict. The library's in-memory storage costs a thread start per call (its expiry timer),
    which a flood of refused attempts would otherwise pay on the event loop."""

    def __init__(self, per_client: str, per_username: str, *,
                 clock: Callable[[], float] = time.time, remembered: int = 4096) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_client = parse(per_client)
        self._per_username = parse(per_username)
        self._clock = clock
        self._remembered = remembered
        self._refused_until: dict[tuple[str, str], float] = {}

    def client(self, address: str) -> None:
        """Count one login or registration attempt from ``address``; 429 past the limit."""
        self._hit(self._per_client, "client", address, "too many attempts from this address")

    def username(self, username: str) -> None:
        """Count one login attempt for ``username`` (any address); 429 past the limit."""
        self._hit(self._per_username, "username", username.casefold(),
                  "too many attempts for this username")

    def _hit(self, item: RateLimitItem, kind: str, identity: str, message: str) -> None:
        now = self._clock()
        refused = (kind, identity)
        until = self._refused_until.get(refused)
        if until is not None:
            if now < until:
                raise TooManyRequests(message, until - now)
            del self._refused_until[refused]
        if self._limiter.hit(item, kind, identity):
            return
        until = self._limiter.get_window_stats(item, kind, identity).reset_time
        if len(self._refused_until) >= self._remembered:
            # Oldest first: the windows are alike, so that is about the first to expire.
            del self._refused_until[next(iter(self._refused_until))]
        self._refused_until[refused] = until
        raise TooManyRequests(message, until - now)


def client_address(request: Request) -> str:
    """The client's address: trusted forwarded headers (see the module docstring), else the
    peer."""
    return request.remote_addr or request.ip or "unknown"
