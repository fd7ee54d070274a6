"""Redis backend: redis.asyncio (hiredis parser when installed) on a blocking pool.

Every pool, timeout and retry setting is explicit (redis-py 8 changed several defaults): a
dead Redis costs one bounded attempt (one quick reconnect on a refused/reset connection, never
a retry after a timeout), not seconds of backoff. All redis, OS and timeout errors become
``CacheBackendError`` raised ``from`` the original.

Generation counters are keys without a TTL while entries always have one, so run Redis with
``maxmemory-policy`` ``noeviction`` or a ``volatile-*`` policy: an evicted counter could
restart below the value an old entry was stored under. Likewise a Redis that restarts from an
older snapshot (RDB, or AOF without ``appendfsync always``) forgets the INCRs made after it and
may serve entries they had invalidated, until their TTL; a restart that loses everything is safe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from middleware.backends.base import CacheBackendError
from middleware.settings import redact_url

if TYPE_CHECKING:
    from middleware.settings import CacheSettings

__all__ = ["RedisBackend", "redis_connection_kwargs"]

_TRANSIENT: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError, redis_errors.TimeoutError, OSError, asyncio.TimeoutError,
)


def redis_connection_kwargs(url: str, settings: CacheSettings) -> dict[str, Any]:
    """The explicit pool/connection settings for ``url`` (exposed for tests and docs)."""
    kwargs: dict[str, Any] = {
        "max_connections": settings.pool_size,
        "timeout": settings.pool_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "socket_timeout": settings.socket_timeout,
        "socket_keepalive": True,
        "health_check_interval": settings.health_check_interval,
        # One quick reconnect when a pooled connection was reset (Redis restarted); timeouts
        # are never retried, so a hanging Redis costs exactly one socket timeout.
        "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.05), retries=1,
                       supported_errors=(redis_errors.ConnectionError,)),
        "retry_on_error": [],
        "decode_responses": False,
    }
    if url.startswith("rediss://"):
        kwargs["ssl_cert_reqs"] = "none" if settings.tls_insecure else "required"
        kwargs["ssl_check_hostname"] = not settings.tls_insecure
        if settings.tls_ca_certs:
            kwargs["ssl_ca_certs"] = settings.tls_ca_certs
    return kwargs


class RedisBackend:
    """The shared backend: entries and generation counters live in Redis.

    ``get_many`` calls issued in the same event-loop iteration (concurrent requests) are sent
    as one pipeline: one write and one read on one pooled connection instead of one per
    request, which is most of a hit's cost on a busy worker. Each caller still gets its own
    MGET's reply (one round trip); an error fails every caller of that batch.
    """

    name = "redis"
    shared = True

    def __init__(self, client: Redis, *, url: str | None = None, batch: bool = True) -> None:
        self.client = client
        self.url_redacted = redact_url(url)
        self.batch = batch
        self._queue: list[tuple[Sequence[str], asyncio.Future[list[Any]]]] = []
        self._flushing: set[asyncio.Task[None]] = set()
        self.batches = 0

    @classmethod
    def from_url(cls, url: str, settings: CacheSettings) -> RedisBackend:
        """A backend on a ``BlockingConnectionPool`` built from ``url`` and ``settings``."""
        pool = BlockingConnectionPool.from_url(url, **redis_connection_kwargs(url, settings))
        return cls(Redis.from_pool(pool), url=url)

    @property
    def parser(self) -> str:
        """Name of the reply parser class in use (``_AsyncHiredisParser`` with hiredis)."""
        pool = self.client.connection_pool
        parser = pool.connection_kwargs.get("parser_class")
        if parser is None:
            from redis.asyncio.connection import DefaultParser
            parser = DefaultParser
        return str(parser.__name__)

    @asynccontextmanager
    async def _errors(self, operation: str) -> AsyncIterator[None]:
        try:
            yield
        except _TRANSIENT as exc:
            raise CacheBackendError(f"redis {operation}: {type(exc).__name__}: {exc}",
                                    transient=True) from exc
        except redis_errors.RedisError as exc:
            raise CacheBackendError(f"redis {operation}: {type(exc).__name__}: {exc}",
                                    transient=False) from exc

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not self.batch:
            async with self._errors("MGET"):
                values: list[Any] = await self.client.mget(keys)
            return values
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.append((keys, future))
        if len(self._queue) == 1:
            loop.call_soon(self._flush)
        async with self._errors("MGET"):
            return await future

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        task = asyncio.ensure_future(self._send(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _send(self, batch: list[tuple[Sequence[str], asyncio.Future[list[Any]]]]) -> None:
        try:
            if len(batch) == 1:
                replies = [await self.client.mget(batch[0][0])]
            else:
                self.batches += 1
                async with self.client.pipeline(transaction=False) as pipe:
                    for keys, _ in batch:
                        pipe.mget(keys)
                    replies = await pipe.execute()
        except Exception as exc:  # handed to every waiting caller, re-raised there
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), reply in zip(batch, replies):
            if not future.done():
                future.set_result(reply)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        async with self._errors("SET"):
            await self.client.set(key, value, px=max(1, int(ttl * 1000)))

    async def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        async with self._errors("DEL"):
            return int(await self.client.delete(*keys))

    async def incr_many(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        async with self._errors("INCR"):
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.incr(key)
                results = await pipe.execute()
        return [int(value) for value in results]

    async def ping(self) -> float:
        start = time.perf_counter()
        async with self._errors("PING"):
            await self.client.ping()
        return (time.perf_counter() - start) * 1000.0

    async def close(self) -> None:
        async with self._errors("close"):
            await self.client.aclose()
