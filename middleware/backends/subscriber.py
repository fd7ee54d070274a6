"""The invalidation channel: one Redis connection per worker subscribed to ``<ns>:inv``.

Every write's bump script publishes the generation keys it incremented on that channel, in
the same atomic script as the ``INCR`` (``backends.incarnation``), so a bump is never made
without its message. Redis writes the message to every subscriber's socket in the same event
loop pass as the writer's reply; on loopback it is in this worker's socket buffer before the
write's HTTP response has even left the writer. Messages are handled synchronously in
``data_received``: asyncio runs every ready protocol callback of a loop iteration before the
request tasks those callbacks wake, so a request that arrives after the message is looked up
after the message was applied.

The channel is *healthy* only from the subscribe confirmation until anything goes wrong: the
connection drops or is killed (``CLIENT KILL TYPE pubsub``, a Redis restart, Redis cutting a
subscriber whose output buffer grew too large), or a heartbeat ``PING`` is not answered
within ``timeout`` (the worker is not reading fast enough: a backlog). Every change of health
is reported to ``on_health(healthy)``; the caller flushes what it learned. It reconnects by
itself, with a capped backoff.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

import hiredis
from redis.connection import parse_url

from middleware.backends.pipelined import keep_alive, open_connection

__all__ = ["Subscriber"]

log = logging.getLogger(__name__)


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: Subscriber) -> None:
        self.owner = owner
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        keep_alive(transport)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                self.owner._reply(reply)  # noqa: SLF001 - the protocol is the owner's part
        except Exception as exc:  # a protocol error or a refused AUTH: drop the connection
            log.warning("Invalidation channel: %s; reconnecting", exc)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self.owner._set_health(False)  # noqa: SLF001

    def send(self, *command: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(hiredis.pack_command(command))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Subscriber:
    """Keeps one subscription to ``channel`` alive; ``on_message(payload)`` for each message."""

    def __init__(self, url: str, channel: str, *, on_message: Callable[[bytes], None],
                 on_health: Callable[[bool], None], connect_timeout: float, timeout: float,
                 ssl_context: ssl.SSLContext | None = None, heartbeat: float = 1.0) -> None:
        self.options = parse_url(url)
        self.tls = url.startswith("rediss://")
        self.channel = channel
        self.on_message = on_message
        self.on_health = on_health
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.ssl_context = ssl_context or (ssl.create_default_context() if self.tls else None)
        self.healthy = False
        self.connects = 0
        self.messages = 0
        self._protocol: _Protocol | None = None
        self._task: asyncio.Task[None] | None = None
        self._pings_unanswered = 0
        self._closed = False

    def start(self) -> None:
        """Connect and keep connected, in the background (call from the running loop)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        self._closed = True
        self._set_health(False)
        if self._protocol is not None:
            self._protocol.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def drop(self) -> None:
        """Drop the current connection (it reconnects); for tests and a lagging channel."""
        if self._protocol is not None:
            self._protocol.close()

    # -- the connection loop ---------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        while not self._closed:
            try:
                await self._connect_and_serve()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused, timeout, TLS, AUTH: retry with backoff
                log.debug("Invalidation channel connect failed: %s", exc, exc_info=True)
            self._set_health(False)
            if self._closed:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _connect_and_serve(self) -> None:
        options = self.options
        protocol = _Protocol(self)
        self.connects += 1
        async with asyncio.timeout(self.connect_timeout):
            await open_connection(options, protocol, self.ssl_context if self.tls else None)
        self._protocol = protocol
        self._pings_unanswered = 0
        try:
            if options.get("password") is not None:
                user = options.get("username")
                protocol.send(*(("AUTH", user, options["password"]) if user
                                else ("AUTH", options["password"])))
            protocol.send("SUBSCRIBE", self.channel)
            while not protocol.lost.done():
                try:
                    await asyncio.wait_for(asyncio.shield(protocol.lost), self.heartbeat)
                except TimeoutError:
                    self._beat(protocol)
        finally:
            protocol.close()
            self._protocol = None

    def _beat(self, protocol: _Protocol) -> None:
        # A PING is answered after every message queued before it: unanswered for longer
        # than ``timeout``, the channel lags (or is dead) and is no longer trusted.
        if self._pings_unanswered * self.heartbeat >= self.timeout:
            log.warning("Invalidation channel: no answer within %.1f s; reconnecting",
                        self.timeout)
            protocol.close()
            return
        self._pings_unanswered += 1
        protocol.send("PING")

    # -- replies ---------------------------------------------------------------------------

    def _reply(self, reply: Any) -> None:
        if isinstance(reply, hiredis.ReplyError):
            raise reply
        if isinstance(reply, list) and reply:
            kind = reply[0]
            if kind == b"message" and len(reply) == 3:
                self.messages += 1
                self.on_message(reply[2])
            elif kind == b"subscribe":
                self._set_health(True)
            elif kind == b"pong":
                self._pings_unanswered = 0
        elif reply == b"PONG":
            self._pings_unanswered = 0
        # "OK" to AUTH needs nothing.

    def _set_health(self, healthy: bool) -> None:
        if healthy != self.healthy:
            self.healthy = healthy
            if healthy:
                log.info("Invalidation channel %s subscribed: the hot tier serves",
                         self.channel)
            else:
                log.info("Invalidation channel %s down: hot tier off until it is back",
                         self.channel)
            self.on_health(healthy)
