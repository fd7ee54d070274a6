"""A TCP proxy for the tests whose fault can be switched while connections are open.

It listens on a free loopback port and forwards every connection to ``upstream`` (a throwaway
redis-server). The fault applies at once to the connections already open and to new ones:

``pass_through()``   bytes flow unchanged.
``latency(s)``       every chunk, in both directions, is delivered ``s`` seconds after it was
                     read (a delay line, as ``netem delay``: chunks do not queue behind each
                     other's delay, and their order is kept).
``blackhole()``      connections are accepted and read, nothing is forwarded or answered.
``reset()``          open connections are reset (RST: ``SO_LINGER`` 0, then close); new ones
                     are accepted and reset at once.
``half_close(n)``    after ``n`` more bytes from the server, the proxy shuts down its write side
                     towards the client (the client reads EOF mid-reply when ``n`` is small).
``stall_replies()``  commands still reach the server; its replies are dropped, the client's
                     socket stays open.

A delay applies to the chunks read after the switch; chunks already delayed keep their time.
A connection that lost bytes (blackhole, stall) stays in that fault until it closes: resuming
it would hand the client replies to commands it did not send last, a corruption no real
network produces (TCP retransmits or the connection dies).

For the tests' bookkeeping: ``accepted`` and ``resets`` count connections, ``seen`` counts the
``watched`` byte patterns (``MGET``, ``PING``) in what the clients sent, dropped or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import Counter
from dataclasses import dataclass

__all__ = ["BLACKHOLE", "HALF_CLOSE", "LATENCY", "PASS", "RESET", "STALL", "FaultProxy"]

PASS = "pass"
LATENCY = "latency"
BLACKHOLE = "blackhole"
RESET = "reset"
HALF_CLOSE = "half_close"
STALL = "stall"

_CHUNK = 64 * 1024
_EOF = b""


@dataclass(frozen=True)
class _Fault:
    mode: str = PASS
    delay: float = 0.0
    budget: int = 0


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One client connection and its upstream connection: four small tasks."""

    def __init__(self, proxy: FaultProxy, client: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.poisoned: str | None = None  # BLACKHOLE or STALL, for good
        self.eof_sent = False
        self.budget: int | None = None  # bytes left before the half-close (HALF_CLOSE only)
        self.budget_of: _Fault | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = asyncio.Event()
        self.tail = b""  # the end of the last chunk from the client, for ``proxy.seen``

    async def run(self, reader: asyncio.StreamReader) -> None:
        proxy = self.proxy
        fault = proxy.fault
        if fault.mode == RESET:
            proxy.resets += 1
            _rst(self.client)
            return
        if fault.mode == BLACKHOLE:
            self.poisoned = BLACKHOLE
            await self._drain_forever(reader)
            return
        try:
            up_reader, self.server = await asyncio.open_connection(*proxy.upstream)
        except OSError:
            _rst(self.client)
            return
        to_server: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        to_client: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self.tasks = [
            asyncio.create_task(self._read(reader, to_server, upstream=True)),
            asyncio.create_task(self._read(up_reader, to_client, upstream=False)),
            asyncio.create_task(self._write(to_server, self.server, upstream=True)),
            asyncio.create_task(self._write(to_client, self.client, upstream=False)),
        ]
        try:
            await self.closed.wait()
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            self.close()

    async def _drain_forever(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(_CHUNK):
                self._count(data)
        self.close()

    def _count(self, data: bytes) -> None:
        """Count the watched patterns in the client's stream (across chunk boundaries)."""
        seen = self.proxy.seen
        keep = 0
        for pattern in self.proxy.watched:
            window = self.tail[-(len(pattern) - 1):] + data if len(pattern) > 1 else data
            seen[pattern] += window.count(pattern)
            keep = max(keep, len(pattern) - 1)
        self.tail = (self.tail + data)[-keep:] if keep else b""

    def _drops(self, upstream: bool) -> bool:
        """Is a chunk read now dropped (and is this connection poisoned from now on)?"""
        mode = self.proxy.fault.mode
        if self.poisoned is None and (mode == BLACKHOLE or (mode == STALL and not upstream)):
            self.poisoned = mode
        if self.poisoned == BLACKHOLE:
            return True
        return self.poisoned == STALL and not upstream

    async def _read(self, reader: asyncio.StreamReader,
                    queue: asyncio.Queue[tuple[float, bytes]], *, upstream: bool) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(_CHUNK):
                if upstream:
                    self._count(data)
                if self._drops(upstream):
                    continue
                fault = self.proxy.fault
                delay = fault.delay if fault.mode == LATENCY else 0.0
                queue.put_nowait((loop.time() + delay, data))
        except OSError:
            self.closed.set()
            return
        queue.put_nowait((loop.time(), _EOF))

    async def _write(self, queue: asyncio.Queue[tuple[float, bytes]],
                     writer: asyncio.StreamWriter, *, upstream: bool) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                due, data = await queue.get()
                if data is _EOF or not data:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not upstream:
                    data = self._within_budget(data)
                    if data is None:
                        continue
                if self._drops(upstream):
                    continue
                writer.write(data)
                await writer.drain()
                if not upstream and self.budget == 0 and not self.eof_sent:
                    self.eof_sent = True
                    writer.write_eof()
            # The other side finished: the whole link goes (no lingering half-open sockets).
        except OSError:
            pass
        self.closed.set()

    def _within_budget(self, data: bytes) -> bytes | None:
        """The part of ``data`` the half-close lets through (``None``: nothing more, ever)."""
        if self.eof_sent:
            return None
        fault = self.proxy.fault
        if fault.mode != HALF_CLOSE:
            return data
        if self.budget_of is not fault:
            self.budget_of, self.budget = fault, fault.budget
        assert self.budget is not None
        data, self.budget = data[:self.budget], self.budget - min(len(data), self.budget)
        return data

    def reset(self) -> None:
        self.proxy.resets += 1
        _rst(self.client)
        if self.server is not None:
            _rst(self.server)
        self.closed.set()

    def close(self) -> None:
        self.closed.set()
        for writer in (self.client, self.server):
            if writer is not None:
                writer.transport.abort()


class FaultProxy:
    """``async with FaultProxy(host, port) as proxy:`` then ``proxy.url`` for the client."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.fault = _Fault()
        self.accepted = 0
        """Connections accepted so far (every mode)."""
        self.resets = 0
        """Connections reset so far."""
        self.watched: tuple[bytes, ...] = (b"MGET", b"PING")
        self.seen: Counter[bytes] = Counter()
        """How often each ``watched`` pattern came from the clients (forwarded or dropped)."""
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def mode(self) -> str:
        return self.fault.mode

    @property
    def open_connections(self) -> int:
        return len(self._links)

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- faults --------------------------------------------------------------------------

    def pass_through(self) -> None:
        self.fault = _Fault()

    def latency(self, seconds: float) -> None:
        self.fault = _Fault(LATENCY, delay=seconds)

    def blackhole(self) -> None:
        self.fault = _Fault(BLACKHOLE)

    def reset(self) -> None:
        self.fault = _Fault(RESET)
        for link in list(self._links):
            link.reset()

    def half_close(self, after_bytes: int = 0) -> None:
        self.fault = _Fault(HALF_CLOSE, budget=after_bytes)

    def stall_replies(self) -> None:
        self.fault = _Fault(STALL)

    # -- connections ---------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link(self, writer)
        self._links.add(link)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await link.run(reader)
        finally:
            self._links.discard(link)
            self._tasks.discard(task)  # type: ignore[arg-type]
            link.close()
