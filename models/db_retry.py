"""Ride out a PostgreSQL restart: statements wait for the database instead of failing at once.

A ``pg_ctl restart``, a managed database's failover or maintenance restart, or a PgBouncer
reload takes the server away for a fraction of a second to a few seconds. Without this, every
request that needs the database in that window answers 500. With it, a statement that failed
*because the database was not there* is retried with a short backoff for up to
``DATABASE_RETRY_SECONDS`` (0 turns it off):

- failures before anything was sent (connect refused, ``CannotConnectNowError`` while the
  server starts or stops, a pooled connection the server already closed): retried for every
  statement, since nothing ran;
- a connection lost *during* a statement: retried only for read-only statements (``SELECT``,
  ``WITH ... SELECT``), since a write may have committed before the connection went.

A statement still failing for one of these reasons when the time is up raises
``DatabaseUnavailable`` (the handlers answer 503 with ``Retry-After``, and a cached route's
``stale-if-error`` window can answer instead), not whatever the driver raised (a 500).

Statements inside a transaction are not retried (the transaction is gone with its connection;
the request fails as before). Tortoise's own single retry (``retry_connection``) still runs
first, inside each attempt.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import asyncpg

__all__ = ["DatabaseUnavailable", "retry_when_unavailable"]

log = logging.getLogger(__name__)

_METHODS = ("execute_query", "execute_query_dict", "execute_insert", "execute_many",
            "execute_script")

_NOT_SENT: tuple[type[BaseException], ...] = (
    ConnectionRefusedError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
)
"""The statement never reached a server: safe to retry whatever it is."""

_LOST: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,  # a connection left mid-operation by the drop
    ConnectionResetError,
    ConnectionError,
    OSError,
)
"""The connection went away, perhaps mid-statement: safe to retry reads only."""


class DatabaseUnavailable(Exception):
    """The database could not be reached (or was lost) for ``DATABASE_RETRY_SECONDS``."""


def _unavailable(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return False  # a TLS or certificate failure is configuration, not an outage
        if isinstance(cause, _NOT_SENT + _LOST):
            return True
        cause = cause.__cause__
    return False


def _read_only(args: tuple[Any, ...]) -> bool:
    if not args or not isinstance(args[0], str):
        return False
    statement = args[0].lstrip().upper()
    if statement.startswith("SELECT"):
        return True
    return statement.startswith("WITH") and not any(
        verb in statement for verb in ("INSERT", "UPDATE", "DELETE"))


def _retryable(exc: BaseException, args: tuple[Any, ...]) -> bool:
    cause: BaseException | None = exc
    while cause is not None:  # Tortoise sometimes wraps the driver's error
        if isinstance(cause, _NOT_SENT):
            return True
        if isinstance(cause, _LOST):
            return _read_only(args)
        cause = cause.__cause__
    return False


def _retrying(method: Callable[..., Awaitable[Any]], name: str,
              budget: float) -> Callable[..., Awaitable[Any]]:
    @wraps(method)
    async def retried(*args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + budget
        delay = 0.05
        while True:
            try:
                return await method(*args, **kwargs)
            except Exception as exc:
                if not _retryable(exc, args) or time.monotonic() + delay > deadline:
                    if _unavailable(exc):
                        raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc
                    raise
                log.info("Database unavailable (%s: %s); retrying %s in %.2f s",
                         type(exc).__name__, exc, name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    return retried


def retry_when_unavailable(client: Any, budget: float) -> Any:
    """Wrap ``client``'s statement methods (PostgreSQL only; idempotent); returns ``client``.

    ``budget`` 0 retries nothing but still reports an unreachable database as
    ``DatabaseUnavailable``."""
    if getattr(client, "_retry_when_unavailable", False):
        return client
    if client.capabilities.dialect != "postgres":
        return client  # an embedded SQLite file does not restart under us
    for name in _METHODS:
        method = getattr(client, name, None)
        if method is not None:
            setattr(client, name, _retrying(method, name, budget))
    client._retry_when_unavailable = True
    return client
