"""A client of Upstash's Redis REST protocol: one keep-alive HTTP client (aiohttp) per worker.

The protocol (https://upstash.com/docs/redis/features/restapi), as far as the cache uses it:

- ``POST /`` with one command as a JSON array (``["MGET", "k1", "k2"]``) answers
  ``{"result": ...}``, or ``{"error": "..."}`` with status 400 when Redis refused the command;
- ``POST /pipeline`` with a JSON array of commands answers an array of those objects, the
  commands run in order (not atomically);
- ``Authorization: Bearer <token>``; a wrong or missing token is 401;
- ``Upstash-Encoding: base64``: every string in a result comes base64-encoded (so binary values
  survive JSON), except a bare ``OK`` status on Upstash itself; numbers and ``null`` as they are.
  Errors are never encoded.

aiohttp rather than httpx: on a cache hit the client is the whole cost, and httpx (pure Python,
with a pool that polls every idle connection on each request) spent about ten times aiohttp's
CPU per request (0.6-1.5 ms against 0.07-0.13 ms on the development machine).

Every wait is bounded: connecting (and waiting for a pooled connection) by ``connect_timeout``,
each read by ``read_timeout``, and the whole exchange by their sum, so a server that trickles
bytes cannot hold a request longer. A reply body larger than ``max_reply_bytes`` is refused
while it is read (the connection is dropped, the rest never read). One retry only: a request
whose connection closed before any answer (a keep-alive connection the server closed) is sent
once more on a new connection, with a deadline of its own; anything else is left to the circuit
breaker above, which decides when to try again. The session is opened on first use, on the
running loop, and again if a later call runs on another loop (a serverless handler that starts
a loop per invocation).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ssl
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

__all__ = ["RestAuthError", "RestClient", "RestError", "RestProtocolError", "RestReplyError",
           "RestTooLarge", "RestUnavailable", "decode_result"]


class RestError(Exception):
    """Anything that went wrong talking to the REST endpoint."""


class RestUnavailable(RestError):
    """No usable answer: connect/read timeout, connection error, HTTP 5xx or 429."""


class RestAuthError(RestUnavailable):
    """HTTP 401/403: the token is wrong (or read-only for a write). It stays wrong, so it is
    counted like an outage, as a refused Redis ``AUTH`` is on TCP."""


class RestTooLarge(RestError):
    """The reply body exceeded ``max_reply_bytes``; it was not read to the end."""


class RestProtocolError(RestError):
    """The reply is not what the protocol says (not JSON, wrong shape, bad base64)."""


class RestReplyError(RestError):
    """Redis answered one command with an error (``{"error": "..."}``)."""


def _decode_string(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        if value == "OK":  # Upstash leaves the OK status unencoded (SRH encodes it)
            return b"OK"
        raise RestProtocolError(f"result string is not base64: {value[:40]!r}") from None


def decode_result(value: Any) -> Any:
    """A ``result`` of the base64 encoding: strings become the bytes they encode, arrays are
    decoded element by element, numbers and ``None`` stay."""
    if isinstance(value, str):
        return _decode_string(value)
    if isinstance(value, list):
        return [decode_result(item) for item in value]
    return value


def _one(reply: Any) -> Any:
    """The decoded result of one ``{"result"}``/``{"error"}`` object; an error is returned as a
    ``RestReplyError`` (not raised), like the pipelined TCP client's error replies."""
    if not isinstance(reply, dict):
        raise RestProtocolError(f"expected an object, got {type(reply).__name__}")
    if "error" in reply:
        return RestReplyError(str(reply["error"]))
    if "result" not in reply:
        raise RestProtocolError("reply has neither result nor error")
    return decode_result(reply["result"])


class RestClient:
    """``execute`` commands over the REST protocol; replies in order, errors as
    ``RestReplyError`` instances. One command is ``POST /``, several one ``POST /pipeline``."""

    def __init__(self, url: str, token: str, *, connect_timeout: float, read_timeout: float,
                 max_reply_bytes: int, verify: ssl.SSLContext | bool = True,
                 max_connections: int = 100) -> None:
        self.url = url.rstrip("/")
        self.max_reply_bytes = max_reply_bytes
        self.deadline = connect_timeout + read_timeout
        self.requests = 0
        """HTTP requests sent (what a test or the bench counts)."""
        self._headers = {"Authorization": f"Bearer {token}", "Upstash-Encoding": "base64",
                         "Content-Type": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=self.deadline, connect=connect_timeout,
                                              sock_connect=connect_timeout,
                                              sock_read=read_timeout)
        self._verify = verify
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _current(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            # ssl=True: aiohttp's default verified context; False: no verification.
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._verify,
                                             enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, timeout=self._timeout,
                trust_env=False, raise_for_status=False)
            self._loop = loop
        return self._session

    async def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one request; their decoded results, in order."""
        wire = [[_arg(arg) for arg in command] for command in commands]
        if len(wire) == 1:
            reply = await self._post("/", orjson.dumps(wire[0]))
            if isinstance(reply, dict) and "error" in reply:
                return [RestReplyError(str(reply["error"]))]
            return [_one(reply)]
        replies = await self._post("/pipeline", orjson.dumps(wire))
        if not isinstance(replies, list) or len(replies) != len(commands):
            raise RestProtocolError(f"pipeline of {len(commands)} commands answered "
                                    f"{type(replies).__name__}")
        return [_one(reply) for reply in replies]

    async def _post(self, path: str, body: bytes) -> Any:
        try:
            try:
                status, data = await self._exchange(path, body)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if isinstance(exc, aiohttp.ClientConnectorError):
                    raise  # could not connect: nothing to retry on a new connection
                # The connection closed before an answer: most often a keep-alive connection
                # the server (an idle timeout) closed while this request was on its way, or
                # while the process was frozen. aiohttp retries that only for idempotent
                # HTTP methods, never a POST (RFC 9112 section 9.3.1); the cache's commands
                # are safe to repeat (reads, SET, the scripts: a generation bumped twice is
                # one more invalidation), so once, on a new connection.
                status, data = await self._exchange(path, body)
        except asyncio.TimeoutError as exc:  # aiohttp's connect, read and total timeouts
            raise RestUnavailable(f"no complete answer within the timeouts "
                                  f"({exc or type(exc).__name__})") from exc
        except aiohttp.ClientError as exc:  # refused, TLS, reset, bad HTTP
            raise RestUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if status in (401, 403):
            raise RestAuthError(f"HTTP {status}: {_text(data)}")
        if status >= 500 or status == 429:
            raise RestUnavailable(f"HTTP {status}: {_text(data)}")
        try:
            reply = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise RestProtocolError(f"HTTP {status}, not JSON: {_text(data)}") from None
        if status != 200 and not (status == 400 and isinstance(reply, dict)
                                  and "error" in reply):
            raise RestProtocolError(f"HTTP {status}: {_text(data)}")
        return reply

    async def _exchange(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.requests += 1
        async with self._current().post(self.url + path, data=body,
                                        allow_redirects=False) as response:
            return response.status, await self._read(response)

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.max_reply_bytes
        declared = response.content_length
        if declared is not None and declared > limit:
            response.close()  # drop the connection rather than read what was announced
            raise RestTooLarge(f"reply of {declared} bytes exceeds the limit of {limit}")
        chunks: list[bytes] = []
        size = 0
        # Decompressed chunks (aiohttp decodes gzip): the limit bounds memory, not the wire.
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > limit:
                response.close()
                raise RestTooLarge(f"reply exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        """Close the pooled connections (of the loop that opened them)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            try:
                if self._loop is asyncio.get_running_loop():
                    await session.close()
            finally:
                self._loop = None


def _arg(arg: Any) -> str:
    """Every argument as a JSON string (numbers too: servers differ on accepting them). Bytes
    travel as Latin-1 code points, one per byte, which the server stores UTF-8-encoded (see
    ``upstash``: JSON cannot carry raw bytes)."""
    if isinstance(arg, bytes):
        return arg.decode("latin-1")
    return arg if isinstance(arg, str) else str(arg)


def _text(data: bytes) -> str:
    return data[:200].decode("utf-8", "replace").strip() or "(empty body)"
