"""A local stand-in of Upstash's Redis REST protocol, in front of a real redis-server.

No Docker here, so the usual stand-in (SRH, serverless-redis-http) cannot run. This is that
protocol, as Upstash documents it, over asyncio streams (HTTP/1.1, keep-alive):

- ``POST /`` with a JSON command array: ``{"result": ...}``, or 400 ``{"error": "..."}`` when
  Redis answers an error (an unknown command included);
- ``POST /pipeline`` with an array of commands: an array of those objects, run in order;
- ``POST /multi-exec``: the same inside ``MULTI``/``EXEC``;
- ``Authorization: Bearer <token>``, else 401 ``{"error": "Unauthorized"}``;
- ``Upstash-Encoding: base64``: every string in a result base64-encoded except a bare ``OK``.

Commands reach Redis through one pipelined connection, replies exactly as Redis sent them
(error replies keep their code: ``NOSCRIPT ...``). ``requests`` counts HTTP requests by path,
``commands`` the Redis commands by name. ``fault`` makes it misbehave: ``"hang"`` (read the
request, never answer), ``"drop"`` (read the request, close the connection), ``"503"``,
``"oversize"`` (a 200 reply of ``oversize_bytes`` with a Content-Length) and
``"oversize-chunked"`` (the same, chunked, no length announced).
``close_idle_connections`` closes the keep-alive connections waiting for a request, as a
server's (or a load balancer's) idle timeout does.

Also runnable on its own (the bench): ``python -m tests.upstash_standin --redis-url URL
--token T --port P --lifetime SECONDS``; it prints ``READY <url>`` and stops after the lifetime.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ssl
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson

from middleware.backends.pipelined import PipelinedRedis, ReplyError

__all__ = ["UpstashStandin", "standin_in_thread", "upstash_standin"]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 503: "Service Unavailable"}


def _encode(value: Any, base64_on: bool) -> Any:
    if isinstance(value, bytes):
        if not base64_on:
            return value.decode("utf-8", "replace")
        return "OK" if value == b"OK" else base64.b64encode(value).decode()
    if isinstance(value, list):
        return [_encode(item, base64_on) for item in value]
    return value


def _reply(value: Any, base64_on: bool) -> dict[str, Any]:
    if isinstance(value, ReplyError):
        return {"error": str(value)}
    return {"result": _encode(value, base64_on)}


COUNT_PATH = "/__standin/requests"
"""``GET`` it for ``{"requests": <HTTP requests served>}`` (the bench counts requests per run)."""


class UpstashStandin:
    """The stand-in server (see the module docstring). ``url`` once started."""

    def __init__(self, redis_url: str, token: str) -> None:
        self.redis = PipelinedRedis(redis_url, connect_timeout=5, socket_timeout=10)
        self.token = token
        self.fault: str | None = None
        self.oversize_bytes = 8 * 1024 * 1024
        self.requests: Counter[str] = Counter()
        self.commands: Counter[str] = Counter()
        self.connections = 0
        """TCP connections accepted (keep-alive: one carries many requests)."""
        self.url = ""
        self.loop: asyncio.AbstractEventLoop | None = None
        """The loop it serves on (``close_idle_connections_threadsafe`` calls into it)."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0, ssl_context: ssl.SSLContext | None = None) -> str:
        """Listen on loopback (HTTPS with ``ssl_context``); returns the URL."""
        self.loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port,
                                                  ssl=ssl_context)
        scheme = "https" if ssl_context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.redis.aclose()

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def close_idle_connections(self) -> int:
        """Close (FIN, as a keep-alive timeout does) every connection waiting for its next
        request; how many. Call it on the stand-in's loop."""
        idle, self._idle = list(self._idle), set()
        for writer in idle:
            writer.close()
        return len(idle)

    def close_idle_connections_threadsafe(self) -> int:
        """``close_idle_connections`` from another thread (``standin_in_thread``)."""
        assert self.loop is not None

        async def close() -> int:
            return self.close_idle_connections()

        return asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        except asyncio.CancelledError:
            pass  # stop(): end quietly (asyncio.streams logs a task that ends cancelled)
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        self._idle.add(writer)
        try:
            first = await reader.read(1)
        finally:
            self._idle.discard(writer)
        if not first or writer.is_closing():
            return False
        if first == b"\x16":  # a TLS ClientHello on this plain port: answer as HTTP servers do
            writer.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
            await writer.drain()
            return False
        line = first + await reader.readline()
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        path = target.split("?", 1)[0]
        if path == COUNT_PATH and method == "GET":
            # For the bench: the HTTP requests served so far (this one not counted).
            await self._send(writer, 200, orjson.dumps({"requests": self.total_requests}))
            return True
        self.requests[path] += 1
        if self.fault == "hang":
            await asyncio.Event().wait()  # until stop() cancels it
        if self.fault == "drop":
            return False  # the connection closes, the request unanswered
        if self.fault == "503":
            await self._send(writer, 503, b"upstream unavailable", "text/plain")
            return True
        if self.fault in ("oversize", "oversize-chunked"):
            blob = base64.b64encode(b"x" * (self.oversize_bytes * 3 // 4)).decode()
            data = orjson.dumps({"result": [blob]})
            await self._send(writer, 200, data, chunked=self.fault == "oversize-chunked")
            return True
        if headers.get("authorization") != f"Bearer {self.token}":
            await self._send(writer, 401, b'{"error":"Unauthorized"}')
            return True
        if method != "POST":
            await self._send(writer, 405, b'{"error":"Method not allowed"}')
            return True
        status, reply = await self._execute(path, body, headers)
        await self._send(writer, status, orjson.dumps(reply))
        return True

    async def _execute(self, path: str, body: bytes,
                       headers: dict[str, str]) -> tuple[int, Any]:
        base64_on = headers.get("upstash-encoding", "").lower() == "base64"
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 400, {"error": "ERR failed to parse the request body as JSON"}
        if path == "/":
            commands = [parsed]
        elif path in ("/pipeline", "/multi-exec"):
            commands = parsed
        else:
            return 404, {"error": f"ERR unknown endpoint {path}"}
        if not isinstance(commands, list) or not commands or not all(
                isinstance(c, list) and c for c in commands):
            return 400, {"error": "ERR the body must be a command array"}
        wire = [[arg.encode() if isinstance(arg, str) else str(arg).encode() for arg in c]
                for c in commands]
        for command in wire:
            self.commands[command[0].decode().upper()] += 1
        if path == "/multi-exec":
            replies = await self.redis.execute([[b"MULTI"], *wire, [b"EXEC"]])
            results = replies[-1]
            if isinstance(results, ReplyError):
                return 400, {"error": str(results)}
            return 200, [_reply(r, base64_on) for r in results]
        replies = await self.redis.execute(wire)
        if path == "/":
            reply = _reply(replies[0], base64_on)
            return (400 if "error" in reply else 200), reply
        return 200, [_reply(r, base64_on) for r in replies]

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: bytes,
                    content_type: str = "application/json", chunked: bool = False) -> None:
        head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n" \
               f"Content-Type: {content_type}\r\n"
        if chunked:
            writer.write(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
            for start in range(0, len(body), 65536):
                piece = body[start:start + 65536]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()


@contextlib.asynccontextmanager
async def upstash_standin(redis_url: str, token: str) -> AsyncIterator[UpstashStandin]:
    """A started stand-in for the duration of the block."""
    standin = UpstashStandin(redis_url, token)
    await standin.start()
    try:
        yield standin
    finally:
        await standin.stop()


@contextlib.contextmanager
def standin_in_thread(redis_url: str, token: str,
                      ssl_context: ssl.SSLContext | None = None) -> Iterator[UpstashStandin]:
    """A stand-in on its own event loop in a thread, for code that runs its own loop
    (``asyncio.run`` in the checker, a Lambda-style handler)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    standin = UpstashStandin(redis_url, token)
    asyncio.run_coroutine_threadsafe(standin.start(ssl_context=ssl_context), loop).result(10)
    try:
        yield standin
    finally:
        asyncio.run_coroutine_threadsafe(standin.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _main(args: argparse.Namespace) -> None:
    standin = UpstashStandin(args.redis_url, args.token)
    print(f"READY {await standin.start(args.port)}", flush=True)
    try:
        await asyncio.sleep(args.lifetime)
    finally:
        await standin.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Upstash REST stand-in (tests, bench)")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=600.0,
                        help="seconds before it stops by itself (default %(default)s)")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
