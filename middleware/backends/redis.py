"""Redis backend: one pipelined connection per worker (``PipelinedRedis``), or any redis.asyncio
client (fakeredis in tests, a client the application built itself).

Every timeout is explicit (redis-py 8 changed several defaults): a dead Redis costs one connect
attempt or one socket timeout, never seconds of retries and backoff; the circuit breaker above
decides when to try again. All redis, OS and timeout errors become ``CacheBackendError`` raised
``from`` the original. Connection errors, timeouts and the error replies of a Redis that cannot
serve *right now* (``UNAVAILABLE_REPLIES``: loading its data set, blocked by a script, a replica
without its master, a failover in progress) are transient: they feed the circuit breaker. Other
error replies are answers, not outages: a wrong type, or ``OOM`` (Redis full under
``noeviction``: reads still work, a refused SET only leaves a miss uncached, a refused INCR is
kept and replayed like any lost invalidation), so they never open the breaker.

Generation counters are keys without a TTL while entries always have one, so run Redis with
``maxmemory-policy`` ``noeviction`` or a ``volatile-*`` policy: an evicted counter could
restart below the value an old entry was stored under. Likewise a Redis that restarts from an
older snapshot (RDB, or AOF without ``appendfsync always``) forgets the INCRs made after it and
may serve entries they had invalidated, until their TTL; a restart that loses everything is safe.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from redis import exceptions as redis_errors
from redis.connection import parse_url

from middleware.backends.base import CacheBackendError
from middleware.backends.pipelined import PipelinedRedis
from middleware.settings import redact_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from middleware.settings import CacheSettings

__all__ = ["UNAVAILABLE_REPLIES", "RedisBackend", "RedisClientAdapter", "is_unavailable_reply",
           "ssl_context_for"]

log = logging.getLogger(__name__)

_URL_OPTIONS = frozenset({"host", "port", "path", "db", "username", "password",
                          "connection_class", "ssl_cert_reqs", "ssl_ca_certs", "socket_timeout",
                          "socket_connect_timeout"})

_TRANSIENT: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError, redis_errors.TimeoutError, OSError, asyncio.TimeoutError,
)

UNAVAILABLE_REPLIES = frozenset({
    "LOADING",      # restarted, still reading its RDB/AOF
    "BUSY",         # a script or function runs past busy-reply-threshold
    "MASTERDOWN",   # a replica that lost its master (replica-serve-stale-data no)
    "READONLY",     # a former master demoted by a failover; the endpoint moves soon
    "TRYAGAIN",     # cluster resharding
    "CLUSTERDOWN",  # cluster without quorum
    "NOREPLICAS",   # min-replicas-to-write not met
})
"""First words of error replies that mean "Redis cannot serve now" (transient)."""


def is_unavailable_reply(reply: BaseException) -> bool:
    """Whether an error reply says Redis cannot serve right now (see ``UNAVAILABLE_REPLIES``)."""
    if isinstance(reply, _TRANSIENT):  # redis.asyncio maps LOADING to BusyLoadingError
        return True
    return str(reply).split(" ", 1)[0] in UNAVAILABLE_REPLIES


def ssl_context_for(settings: CacheSettings) -> ssl.SSLContext:
    """The TLS settings for ``rediss://``: verified against ``tls_ca_certs`` (or the system
    store) with the host name checked, unless ``tls_insecure``."""
    context = ssl.create_default_context(cafile=settings.tls_ca_certs)
    if settings.tls_insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Commands(Protocol):
    """What the backend needs of a client: a list of commands in, their replies out."""

    async def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]: ...

    async def aclose(self) -> None: ...


class RedisClientAdapter:
    """A redis.asyncio client (or fakeredis) as ``Commands``: one pipeline per call."""

    def __init__(self, client: Redis) -> None:
        self.client = client

    async def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        async with self.client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))

    async def aclose(self) -> None:
        await self.client.aclose()


class RedisBackend:
    """The shared backend: entries and generation counters live in Redis.

    ``client``: a ``PipelinedRedis`` (``from_url``), or a redis.asyncio client, which is
    wrapped in ``RedisClientAdapter``. Each operation is one round trip.
    """

    name = "redis"
    shared = True

    def __init__(self, client: Commands | Redis, *, url: str | None = None) -> None:
        self.client: Commands = (client if hasattr(client, "execute")  # type: ignore[assignment]
                                 else RedisClientAdapter(client))  # type: ignore[arg-type]
        self.url_redacted = redact_url(url)

    @classmethod
    def from_url(cls, url: str, settings: CacheSettings) -> RedisBackend:
        """A backend on one pipelined connection to ``url``, with ``settings``' timeouts.

        The URL's own ``ssl_cert_reqs=none`` (Heroku-style), ``ssl_ca_certs``,
        ``socket_timeout`` and ``socket_connect_timeout`` options override the settings; any
        other query option is logged as ignored.
        """
        options = parse_url(url)
        ignored = sorted(set(options) - _URL_OPTIONS)
        if ignored:
            log.warning("Redis URL options ignored by the cache: %s", ", ".join(ignored))
        settings = replace(
            settings,
            tls_insecure=settings.tls_insecure or str(options.get("ssl_cert_reqs", "")).lower()
            in {"none", str(int(ssl.CERT_NONE))},
            tls_ca_certs=options.get("ssl_ca_certs") or settings.tls_ca_certs,
            socket_timeout=float(options.get("socket_timeout") or settings.socket_timeout),
            connect_timeout=float(options.get("socket_connect_timeout")
                                  or settings.connect_timeout))
        client = PipelinedRedis(
            url, connect_timeout=settings.connect_timeout, socket_timeout=settings.socket_timeout,
            ssl_context=ssl_context_for(settings) if url.startswith("rediss://") else None)
        return cls(client, url=url)

    async def _run(self, operation: str, commands: Sequence[Sequence[Any]]) -> list[Any]:
        try:
            replies = await self.client.execute(commands)
        except _TRANSIENT as exc:
            # The pipelined client fails every waiter of a dropped connection with the same
            # exception object: that object is the incident the breaker counts once.
            raise CacheBackendError(f"redis {operation}: {type(exc).__name__}: {exc}",
                                    transient=True, incident=exc) from exc
        except redis_errors.RedisError as exc:
            raise CacheBackendError(f"redis {operation}: {type(exc).__name__}: {exc}",
                                    transient=is_unavailable_reply(exc)) from exc
        for reply in replies:
            if isinstance(reply, Exception):
                raise CacheBackendError(f"redis {operation}: {type(reply).__name__}: {reply}",
                                        transient=is_unavailable_reply(reply)) from reply
        return replies

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        values: list[bytes | None] = (await self._run("MGET", (("MGET", *keys),)))[0]
        return values

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._run("SET", (("SET", key, value, "PX", max(1, int(ttl * 1000))),))

    async def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        return int((await self._run("DEL", (("DEL", *keys),)))[0])

    async def incr_many(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        return [int(value) for value in await self._run("INCR", [("INCR", k) for k in keys])]

    async def ping(self) -> float:
        start = time.perf_counter()
        await self._run("PING", (("PING",),))
        return (time.perf_counter() - start) * 1000.0

    async def close(self) -> None:
        try:
            await self.client.aclose()
        except (*_TRANSIENT, redis_errors.RedisError) as exc:
            raise CacheBackendError(f"redis close: {type(exc).__name__}: {exc}",
                                    transient=True) from exc
