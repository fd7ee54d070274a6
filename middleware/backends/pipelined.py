"""One Redis connection per worker, every concurrent caller's commands pipelined on it.

redis.asyncio takes a pooled connection per command and wraps each in retries, timeouts and a
task: on a cache hit that bookkeeping cost more CPU than everything else the cache does. Here a
call packs its commands (``hiredis.pack_command``), they join this loop iteration's outgoing
buffer (one ``write`` per iteration for every caller), and replies, parsed by ``hiredis.Reader``,
are handed out in order: Redis answers the commands of one connection in the order they came.

Failure is bounded and loud: a connect slower than ``connect_timeout`` or a reply slower than
``socket_timeout`` fails every call waiting on the connection (``TimeoutError``) and drops it;
a lost connection fails its waiters (``ConnectionError``). The next call connects again, once:
there are no retries and no backoff here, the circuit breaker above decides when to stop
trying. Error replies come back as ``ReplyError`` instances among the replies, not raised.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis
from redis.connection import parse_url
from redis import exceptions as rx

__all__ = ["OnConnect", "PipelinedRedis", "ReplyError", "keep_alive", "open_connection"]

Execute = Callable[[Sequence[Sequence[Any]]], Awaitable[list[Any]]]
OnConnect = Callable[[Execute], Awaitable[None]]


class ReplyError(rx.ResponseError):
    """An error reply from Redis (``-ERR ...``), returned in place of that command's reply."""


def _caused(error: rx.RedisError, cause: BaseException | None) -> rx.RedisError:
    """``error`` with ``cause`` chained (what a ``raise ... from`` would have done)."""
    error.__cause__ = cause
    return error


def keep_alive(transport: asyncio.BaseTransport) -> None:
    """TCP keep-alive on a TCP connection, so a peer that vanished is noticed eventually."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


async def open_connection(options: dict[str, Any], protocol: asyncio.Protocol,
                          ssl_context: ssl.SSLContext | None) -> None:
    """Connect ``protocol`` to the server ``options`` (redis-py's ``parse_url``) names: a Unix
    socket, or TCP (TLS with ``ssl_context``, the host name checked against the certificate)."""
    loop = asyncio.get_running_loop()
    if "path" in options:
        await loop.create_unix_connection(lambda: protocol, options["path"])
        return
    host = options.get("host", "localhost")
    await loop.create_connection(lambda: protocol, host, options.get("port", 6379),
                                 ssl=ssl_context,
                                 server_hostname=host if ssl_context is not None else None)


class _Call:
    __slots__ = ("future", "remaining", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], count: int) -> None:
        self.future = future
        self.remaining = count
        self.replies: list[Any] = []


class _Protocol(asyncio.Protocol):
    """The connection: an outgoing buffer flushed once per loop iteration, a FIFO of calls."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(replyError=ReplyError)
        self.calls: deque[tuple[_Call, float]] = deque()
        self.out: list[bytes] = []
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        keep_alive(transport)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        calls = self.calls
        try:
            while (reply := reader.gets()) is not False:
                if not calls:
                    raise rx.ConnectionError("Redis sent a reply nobody asked for")
                call = calls[0][0]
                call.replies.append(reply)
                call.remaining -= 1
                if not call.remaining:
                    calls.popleft()
                    if not call.future.done():
                        call.future.set_result(call.replies)
        except (hiredis.ProtocolError, rx.ConnectionError) as exc:
            self.fail(_caused(rx.ConnectionError(f"Redis protocol error: {exc}"), exc))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(_caused(rx.ConnectionError(
            f"Connection to Redis lost: {exc or 'closed by the server'}"), exc))

    # -- calls -----------------------------------------------------------------------------

    def call(self, packed: list[bytes], count: int) -> asyncio.Future[list[Any]]:
        """Queue ``count`` packed commands; the future gets their ``count`` replies."""
        if self.closed:
            raise rx.ConnectionError("Connection to Redis is closed")
        future = self.loop.create_future()
        self.calls.append((_Call(future, count), self.loop.time() + self.timeout))
        if not self.out:
            self.loop.call_soon(self.flush)
        self.out += packed
        if self.timer is None:
            self.timer = self.loop.call_at(self.calls[0][1], self._check_deadline)
        return future

    def flush(self) -> None:
        if self.out and not self.closed and self.transport is not None:
            self.transport.write(b"".join(self.out))
        self.out = []

    def _check_deadline(self) -> None:
        self.timer = None
        if not self.calls or self.closed:
            return
        deadline = self.calls[0][1]
        if self.loop.time() >= deadline:
            self.fail(rx.TimeoutError(f"Redis did not answer within {self.timeout:g} s"))
        else:
            self.timer = self.loop.call_at(deadline, self._check_deadline)

    def fail(self, exc: rx.RedisError) -> None:
        """Fail every waiting call and drop the connection (its reply order is lost)."""
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        calls, self.calls = self.calls, deque()
        for call, _ in calls:
            if not call.future.done():
                call.future.set_exception(exc)
        self.out = []
        if self.transport is not None:
            self.transport.abort()


class PipelinedRedis:
    """A minimal Redis client: ``execute`` a list of commands, get their replies.

    ``url``: ``redis://``, ``rediss://`` (TLS) or ``unix://``, with the user, password and
    database number they carry (parsed by redis-py's ``parse_url``).
    """

    def __init__(self, url: str, *, connect_timeout: float, socket_timeout: float,
                 ssl_context: ssl.SSLContext | None = None,
                 on_connect: OnConnect | None = None) -> None:
        self.options = parse_url(url)
        self.tls = url.startswith("rediss://")
        self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        self.ssl_context = ssl_context or (ssl.create_default_context() if self.tls else None)
        self.on_connect = on_connect
        """Runs on every new connection before any other command is sent on it (with a
        function that executes commands on that connection); an error fails the connect."""
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._closed = False
        self.connects = 0
        """Connection attempts made (successful or not)."""

    async def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one pipeline; their replies, in order (errors as ReplyError)."""
        if not commands:
            return []
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connection()
        packed = [hiredis.pack_command(tuple(command)) for command in commands]
        return await protocol.call(packed, len(packed))

    async def _connection(self) -> _Protocol:
        if self._closed:
            raise rx.ConnectionError("Redis client closed")
        # Concurrent callers share one connection attempt.
        if self._connecting is None:
            task = asyncio.ensure_future(self._connect())
            self._connecting = task
            task.add_done_callback(self._connected)
        return await asyncio.shield(self._connecting)

    def _connected(self, task: asyncio.Future[_Protocol]) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            protocol = task.result()
            if self._closed:  # closed while this connect was finishing
                protocol.fail(rx.ConnectionError("Redis client closed"))
            else:
                self._protocol = protocol

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        options = self.options
        protocol = _Protocol(loop, self.socket_timeout)
        self.connects += 1
        try:
            async with asyncio.timeout(self.connect_timeout):
                await open_connection(options, protocol, self.ssl_context if self.tls else None)
                handshake: list[tuple[Any, ...]] = []
                if options.get("password") is not None:
                    user = options.get("username")
                    handshake.append(("AUTH", user, options["password"]) if user
                                     else ("AUTH", options["password"]))
                if options.get("db"):
                    handshake.append(("SELECT", options["db"]))
                if handshake:
                    replies = await protocol.call(
                        [hiredis.pack_command(command) for command in handshake], len(handshake))
                    for command, reply in zip(handshake, replies):
                        if isinstance(reply, ReplyError):
                            # ConnectionErrors: the breaker counts them (a wrong password or
                            # database stays wrong), unlike an error reply to a cache command.
                            error = rx.AuthenticationError if command[0] == "AUTH" \
                                else rx.ConnectionError
                            raise error(f"Redis refused {command[0]}: {reply}") from reply
                if self.on_connect is not None:
                    async def execute(commands: Sequence[Sequence[Any]]) -> list[Any]:
                        packed = [hiredis.pack_command(tuple(c)) for c in commands]
                        return await protocol.call(packed, len(packed))

                    await self.on_connect(execute)
        except TimeoutError as exc:  # asyncio.timeout's or the OS's (the builtin, an OSError)
            protocol.fail(rx.TimeoutError("connect timed out"))
            raise rx.TimeoutError(
                f"Redis connect timed out (limit {self.connect_timeout:g} s)") from exc
        except OSError as exc:  # refused, unreachable, TLS (ssl.SSLError is an OSError)
            protocol.fail(rx.ConnectionError("connect failed"))
            raise rx.ConnectionError(f"Cannot connect to Redis: {exc}") from exc
        except BaseException:  # an error reply to AUTH/SELECT, a reply timeout, cancellation
            protocol.fail(rx.ConnectionError("connect failed"))
            raise
        return protocol

    async def aclose(self) -> None:
        """Drop the connection for good; calls still waiting fail with ``ConnectionError``."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        protocol, self._protocol = self._protocol, None
        if protocol is not None and not protocol.closed:
            protocol.fail(rx.ConnectionError("Redis client closed"))
