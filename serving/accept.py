"""Accept every waiting connection per event-loop pass, not one.

libuv (under uvloop) accepts one connection each time the listening socket is reported readable,
that is once per loop iteration (``uv__server_io`` in ``src/unix/stream.c`` since libuv 1.45).
While a worker serves a thousand busy connections an iteration takes milliseconds, so its accept
queue drains at tens of connections a second: at 1,000 new connections the last ones wait
seconds for their first byte although the worker has CPU to spare. asyncio's own loop accepts up
to ``backlog`` connections per readiness event (``BaseSelectorEventLoop._accept_connection``);
this loop does the same beside libuv.

:class:`AcceptAllLoop` is a uvloop loop whose ``create_server`` also watches a duplicate of each
listening socket and, when it is readable, accepts until the queue is empty, handing each socket
to ``connect_accepted_socket`` with the server's own protocol factory. libuv keeps its watcher: it
takes a connection now and then and finds the queue empty otherwise, which it ignores. Closing the
server closes the duplicates first, so nothing is accepted after it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

import uvloop

__all__ = ["AcceptAllLoop", "AcceptAllPolicy", "install"]

log = logging.getLogger(__name__)

# Errors that say "no more resources for now" (asyncio's list): stop this pass, retry later.
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_RESOURCE_PAUSE = 1.0


class _Acceptor:
    """One listening socket's greedy accept path."""

    __slots__ = ("loop", "listener", "factory", "ssl", "limit", "paused")

    def __init__(self, loop: AcceptAllLoop, listener: socket.socket,
                 factory: Callable[[], asyncio.BaseProtocol], ssl: Any, limit: int) -> None:
        self.loop = loop
        self.listener = listener
        self.factory = factory
        self.ssl = ssl
        self.limit = limit
        self.paused = False

    def start(self) -> None:
        self.loop.add_reader(self.listener.fileno(), self.accept)
        self.paused = False

    def close(self) -> None:
        if not self.paused:
            self.loop.remove_reader(self.listener.fileno())
        self.listener.close()

    def accept(self) -> None:
        # At most `limit` per pass, like asyncio, so one flood cannot starve the requests
        # already being served.
        for _ in range(self.limit):
            try:
                conn, _address = self.listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRORS:
                    raise
                log.error("Cannot accept connections (%s); retrying in %.0f s",
                          exc.strerror, _RESOURCE_PAUSE)
                self.loop.remove_reader(self.listener.fileno())
                self.paused = True
                self.loop.call_later(_RESOURCE_PAUSE, self.start)
                return
            conn.setblocking(False)
            self.loop.create_task(self.hand_over(conn))

    async def hand_over(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, conn, ssl=self.ssl)
        except (OSError, asyncio.TimeoutError):
            # The client left before the transport was set up (or its TLS handshake failed):
            # nothing to serve, as when libuv accepts it.
            conn.close()


class _Server:
    """The server ``create_server`` returned, closing the greedy acceptors with it."""

    def __init__(self, server: asyncio.AbstractServer, acceptors: list[_Acceptor]) -> None:
        self._server = server
        self._acceptors = acceptors

    def close(self) -> None:
        for acceptor in self._acceptors:
            acceptor.close()
        self._acceptors = []
        self._server.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class AcceptAllLoop(uvloop.Loop):  # type: ignore[misc]
    """A uvloop loop whose TCP servers accept every waiting connection per loop pass."""

    async def create_server(self, protocol_factory: Callable[[], asyncio.BaseProtocol],
                            host: Any = None, port: Any = None, *, backlog: int = 100,
                            ssl: Any = None, **kwargs: Any) -> Any:
        server = await super().create_server(protocol_factory, host, port, backlog=backlog,
                                             ssl=ssl, **kwargs)
        if kwargs.get("start_serving") is False:
            return server
        acceptors = []
        for listening in server.sockets:
            if listening.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            # A second descriptor of the same socket: its own epoll registration beside libuv's.
            listener = socket.socket(fileno=socket.dup(listening.fileno()))
            listener.setblocking(False)
            acceptor = _Acceptor(self, listener, protocol_factory, ssl, max(backlog, 1))
            acceptor.start()
            acceptors.append(acceptor)
        return _Server(server, acceptors) if acceptors else server


class AcceptAllPolicy(uvloop.EventLoopPolicy):  # type: ignore[misc]
    """uvloop's policy, making :class:`AcceptAllLoop` loops."""

    def _loop_factory(self) -> AcceptAllLoop:
        return AcceptAllLoop()


def install() -> None:
    """Make the event loops this process creates from now on :class:`AcceptAllLoop` loops."""
    asyncio.set_event_loop_policy(AcceptAllPolicy())
