"""Redis Cluster backend (``REDIS_CLUSTER=true``): redis-py's ``RedisCluster`` with every key of
the namespace in ONE hash slot.

Key layout. A lookup reads the entry, the generation counters of its tags and the global epoch
in one ``MGET``, and a write bumps its counters in one script; in a cluster a multi-key command
must stay within one slot. Every entry depends on the epoch, so *any* entry must share a slot
with it: the namespace itself is the hash tag (``rc:r:GET:/x`` is stored as ``{rc}:r:GET:/x``,
``rc:gen:posts`` as ``{rc}:gen:posts``). What that costs: the cache does not spread over the
cluster. One master (and its replicas) holds every key of the namespace, so the cache's memory
and command rate are bounded by one node, as with a single Redis. What it keeps: a hit, a miss
(``MGET`` + ``SET``) and a write (one ``EVAL``) cost the same commands as on one node, every
script stays atomic (a bump and its invalidation message, the restart check's epoch reset),
and the cluster gives what it is usually chosen for here: a managed endpoint, failover to a
replica, and room for the application's other data. Spreading entries over slots needs a copy
of every counter and of the epoch in each slot that holds entries depending on them, and a
write that bumps each copy (one round trip per slot); not done, see the README. Several
services (``CACHE_NAMESPACE``) land on different slots.

Redirections and topology: each command goes to the slot's owner in redis-py's slot map;
``MOVED`` patches the map and is followed, ``ASK`` is followed with ``ASKING`` and the command
on one connection of the importing node (``backends.cluster_routing`` says why not through
``RedisCluster.execute_command``). A connection error, a timeout or ``CLUSTERDOWN`` reloads
the topology (``CLUSTER SLOTS`` from any known node, the failed one last) before the next
command, which is how a failover is followed. No retries (``Retry(NoBackoff(), 0)``, no
backoff): like the single-node backend, a failure is one error for the circuit breaker.

Restarts (``backends.incarnation``): every new connection to any node runs the restart check
before its first command; on the node that owns the namespace's slot it compares that node's
``run_id`` with ``{ns}:incarnation`` and resets the epoch when they differ (a restarted
master, a failover to a replica, or the slot moved to another master: each resets once). On
other nodes the script is redirected (``MOVED``) and skipped: they hold none of our keys.

Invalidation channel (hot tier): the bump script ``PUBLISH``es on ``<ns>:inv`` on the node
that runs it; the hot tier listens on every master (``backends.cluster_channel`` says why one
connection, or sharded pub/sub, is not enough).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson
from redis import exceptions as rx
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.crc import key_slot
from redis.retry import Retry

from middleware.backends.base import CacheBackendError, random_base
from middleware.backends.cluster_channel import ClusterSubscriber
from middleware.backends.cluster_routing import SlotRouter
from middleware.backends.incarnation import INIT, PUBLISHED_BUMP, IncarnationCheck
from middleware.backends.pipelined import ReplyError
from middleware.backends.redis import is_unavailable_reply, ssl_context_for
from middleware.settings import redact_url

if TYPE_CHECKING:
    from middleware.settings import CacheSettings

__all__ = ["ClusterBackend", "physical_key"]

log = logging.getLogger(__name__)

MAX_CONNECTIONS_PER_NODE = 64
"""Pooled connections per node and worker (redis-py's default is 100). redis-py fails a
command that finds them all busy (``MaxConnectionsError``) instead of waiting, so at most this
many commands are in flight per worker and the next ones wait their turn."""

_TRANSIENT: tuple[type[BaseException], ...] = (
    rx.ConnectionError, rx.TimeoutError, OSError, asyncio.TimeoutError,
    rx.ClusterDownError, rx.MasterDownError, rx.BusyLoadingError,
    rx.ReadOnlyError, rx.ClusterError, rx.RedisClusterException,
)
"""Errors that mean "the cluster cannot serve now" (they feed the breaker): no node
reachable, a slot without a master (``CLUSTERDOWN``), redirections that never settle.
redis-py strips the reply's first word (``CLUSTERDOWN``...), so they are told by type here,
not by ``is_unavailable_reply``. Not ``TRYAGAIN``: a multi-key command whose keys a migration
has split between two nodes (one request fails open; the cluster is healthy, and a long
reshard must not open the breaker)."""


def physical_key(namespace: str, key: str) -> str:
    """``key`` with the namespace as its hash tag: ``rc:gen:x`` -> ``{rc}:gen:x``."""
    prefix = f"{namespace}:"
    if key.startswith(prefix):
        return f"{{{namespace}}}:{key[len(prefix):]}"
    return f"{{{namespace}}}{key}"


class _Redirected(ReplyError):
    """A ``MOVED``/``ASK``/``TRYAGAIN`` reply to the restart check: not this node's slot."""


class ClusterBackend:
    """The shared backend on a Redis Cluster (see the module docstring)."""

    name = "redis"
    shared = True

    def __init__(self, client: RedisCluster, namespace: str, *, url: str,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.url = url
        self.url_redacted = redact_url(url)
        self.ssl_context = ssl_context
        self.channel = f"{namespace}:inv"
        """The invalidation channel every bump publishes on (cluster-wide ``PUBLISH``)."""
        self.slot_key = f"{{{namespace}}}"
        self.router = SlotRouter(client, key_slot(self.slot_key.encode()),
                                 max_in_flight=MAX_CONNECTIONS_PER_NODE)
        """Runs the commands on the slot's owner (``MOVED``/``ASK``, topology refreshes)."""
        self.incarnation = IncarnationCheck(self.slot_key, self.channel)
        """The restart check run on each new connection (see the module docstring)."""
        self._options = parse_url(url)
        hook = self._on_connect
        client.connection_kwargs["redis_connect_func"] = hook
        for node in client.nodes_manager.startup_nodes.values():
            node.connection_kwargs["redis_connect_func"] = hook

    @classmethod
    def from_url(cls, url: str, settings: CacheSettings) -> ClusterBackend:
        """A cluster client that discovers the cluster from the node ``url`` names, with
        ``settings``' timeouts (the URL's ``socket_timeout`` / ``socket_connect_timeout`` and
        ``ssl_cert_reqs=none`` / ``ssl_ca_certs`` override them, as for one node)."""
        options = parse_url(url)
        url_insecure = str(options.get("ssl_cert_reqs", "")).lower() in {
            "none", str(int(ssl.CERT_NONE))}
        settings = replace(
            settings,
            tls_insecure=settings.tls_insecure or url_insecure,
            tls_ca_certs=options.get("ssl_ca_certs") or settings.tls_ca_certs,
            socket_timeout=float(options.get("socket_timeout") or settings.socket_timeout),
            connect_timeout=float(options.get("socket_connect_timeout")
                                  or settings.connect_timeout))
        tls = url.startswith("rediss://")
        if tls and settings.tls_insecure:
            log.warning("Redis TLS certificate verification is OFF for %s: the connection is "
                        "encrypted but whoever answers is trusted", redact_url(url))
        tls_options: dict[str, Any] = {}
        if tls:
            tls_options = {"ssl": True, "ssl_ca_certs": settings.tls_ca_certs,
                           "ssl_cert_reqs": "none" if settings.tls_insecure else "required",
                           "ssl_check_hostname": not settings.tls_insecure}
        client = RedisCluster(
            host=options.get("host", "localhost"), port=int(options.get("port", 6379)),
            username=options.get("username"), password=options.get("password"),
            # Every timeout and retry explicit (redis-py 8's defaults retry with backoff):
            # one failure is one error for the breaker; the topology is reloaded on the next
            # command after a connection error, so no retry is needed to follow a failover.
            socket_timeout=settings.socket_timeout,
            socket_connect_timeout=settings.connect_timeout,
            socket_keepalive=True, health_check_interval=0,
            retry=Retry(NoBackoff(), 0),
            require_full_coverage=False,  # one slot matters to us, not all 16384
            dynamic_startup_nodes=True,   # reload from any known node if this one is gone
            reinitialize_steps=0, max_connections=MAX_CONNECTIONS_PER_NODE,
            **tls_options)
        context = ssl_context_for(settings) if tls else None
        return cls(client, settings.namespace, url=url, ssl_context=context)

    # -- the restart check on every new connection ------------------------------------------

    async def _on_connect(self, connection: Connection) -> None:
        await connection.on_connect()

        async def execute(commands: Sequence[Sequence[Any]]) -> list[Any]:
            replies: list[Any] = []
            for command in commands:
                await connection.send_command(*command)
                try:
                    replies.append(await connection.read_response())
                except (rx.MovedError, rx.AskError, rx.TryAgainError) as exc:
                    replies.append(_Redirected(str(exc)))
                except rx.ResponseError as exc:
                    replies.append(ReplyError(str(exc)))
            return replies

        try:
            await self.incarnation(execute)
        except _Redirected:
            pass  # another node's slot: none of our keys live here

    # -- the invalidation channel (hot tier) --------------------------------------------------

    async def master_urls(self) -> list[str]:
        """URLs (with the configured credentials) of every master in the slot map."""
        await self.router.ready()
        scheme = "rediss" if self.url.startswith("rediss://") else "redis"
        user = self._options.get("username") or ""
        password = self._options.get("password")
        auth = f"{user}:{password}@" if password is not None else ""
        return [f"{scheme}://{auth}{node.host}:{node.port}"
                for node in self.client.get_primaries()]

    def subscriber(self, url: str, channel: str, **options: Any) -> ClusterSubscriber:
        """The hot tier's invalidation channel: a subscription on every master
        (``backends.cluster_channel``); ``url`` is not used (the masters are)."""
        return ClusterSubscriber(self.master_urls, channel, **options)

    # -- commands ---------------------------------------------------------------------------

    def _keys(self, keys: Sequence[str]) -> list[str]:
        ns = self.namespace
        return [physical_key(ns, key) for key in keys]

    async def _run(self, operation: str, *args: Any) -> Any:
        try:
            return await self.router.execute(args)
        except rx.MaxConnectionsError as exc:
            raise CacheBackendError(f"redis cluster {operation}: every connection busy",
                                    transient=False) from exc
        except rx.TryAgainError as exc:
            raise CacheBackendError(f"redis cluster {operation}: TRYAGAIN (keys split by a "
                                    "slot migration)", transient=False) from exc
        except _TRANSIENT as exc:
            raise CacheBackendError(f"redis cluster {operation}: {type(exc).__name__}: {exc}",
                                    transient=True) from exc
        except rx.RedisError as exc:
            raise CacheBackendError(f"redis cluster {operation}: {type(exc).__name__}: {exc}",
                                    transient=is_unavailable_reply(exc)) from exc

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return list(await self._run("MGET", "MGET", *self._keys(keys)))

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._run("SET", "SET", physical_key(self.namespace, key), value,
                        "PX", max(1, int(ttl * 1000)))

    async def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        return int(await self._run("DEL", "DEL", *self._keys(keys)))

    async def incr_many(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        # The message names the keys as the cache knows them (the hot tier's), not the
        # hash-tagged ones.
        values = await self._run(
            "INCR", "EVAL", PUBLISHED_BUMP, len(keys), *self._keys(keys),
            *(random_base() for _ in keys), self.channel, orjson.dumps(list(keys)))
        return [int(value) for value in values]

    async def init_many(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        values = await self._run("INIT", "EVAL", INIT, len(keys), *self._keys(keys),
                                 *(random_base() for _ in keys))
        return [int(value) for value in values]

    async def ping(self) -> float:
        """A real PING to the node that owns the namespace's slot."""
        start = time.perf_counter()
        await self._run("PING", "PING")
        return (time.perf_counter() - start) * 1000.0

    async def close(self) -> None:
        try:
            await self.client.aclose()
        except (*_TRANSIENT, rx.RedisError) as exc:
            raise CacheBackendError(f"redis cluster close: {type(exc).__name__}: {exc}",
                                    transient=True) from exc
