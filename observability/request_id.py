"""``X-Request-ID``: one id per request, on its response and on the log lines it causes.

A client's (or a proxy's: Render, Heroku and nginx set one) id is kept when it is sane, so a
request can be followed across services; otherwise one is generated (uuid4, 32 hex digits).
Sane means 1 to ``MAX_LENGTH`` characters of ``[A-Za-z0-9._:+/=-]``: the id is echoed into a
header and written into logs, so it must not carry spaces, quotes, commas or control characters
(header splitting, forged log fields) nor be large enough to flood either.

The id lives in a ``ContextVar`` for the time the request is handled: Sanic builds the request
and runs its middleware, handler and response middleware in one task, so every log call on the
way sees it (``RequestIdFilter`` copies it onto the record). ``IdentifiedRequest`` (the app's
request class) sets it when the request is built and puts the header on whatever
``respond`` sends: handler responses, cache hits (a short-circuit), routing errors and error
responses alike. A request class rather than a pair of middleware: Sanic's middleware dispatch
cost a cache hit about 6% of its throughput.
"""

from __future__ import annotations

import logging
import os
import re
import time
from contextvars import ContextVar
from typing import Any

from sanic import Request, Sanic
from sanic.compat import Header

__all__ = ["HEADER", "MAX_LENGTH", "IdentifiedRequest", "RequestIdFilter", "current_request_id",
           "install_request_id", "new_request_id", "sane_request_id"]

HEADER = "x-request-id"
MAX_LENGTH = 128
"""Longest id echoed (a UUID is 36 characters, a W3C trace id 32)."""

_SANE = re.compile(r"[A-Za-z0-9._:+/=-]{1,%d}" % MAX_LENGTH)
_CURRENT: ContextVar[str | None] = ContextVar("request_id", default=None)


def sane_request_id(value: str | None) -> str | None:
    """``value`` when it may be echoed and logged as it is, else None."""
    if value and _SANE.fullmatch(value):
        return value
    return None


class _Entropy:
    """``os.urandom`` drawn in blocks: one ``getrandom`` system call per 256 request ids
    instead of one per request. A forked child discards the block it inherited (see
    ``os.register_at_fork`` below), so two processes never hand out the same ids."""

    __slots__ = ("_block", "_offset")

    BLOCK = 16 * 256

    def __init__(self) -> None:
        self._block = b""
        self._offset = 0

    def take16(self) -> bytearray:
        """16 random bytes never handed out before (in this process)."""
        offset = self._offset
        if offset >= len(self._block):
            self._block = os.urandom(self.BLOCK)
            offset = 0
        self._offset = offset + 16
        return bytearray(self._block[offset:offset + 16])

    def discard(self) -> None:
        self._block = b""
        self._offset = 0


_ENTROPY = _Entropy()
os.register_at_fork(after_in_child=_ENTROPY.discard)


def new_request_id() -> str:
    """A random UUID version 4 as 32 hex digits (``uuid.uuid4().hex``'s format, at a tenth of
    its cost: it runs on every request, cache hits included)."""
    raw = _ENTROPY.take16()
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


def current_request_id() -> str | None:
    """The id of the request being handled in this task, if any."""
    return _CURRENT.get()


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` (None outside a request); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = _CURRENT.get()
        return True


class IdentifiedRequest(Request):
    """A request that knows its id from the moment it is built (see the module docstring)."""

    __slots__ = ("received_at", "request_id")

    def __init__(self, url_bytes: bytes, headers: Header, version: str, method: str,
                 transport: Any, app: Any, head: bytes = b"", stream_id: int = 0) -> None:
        # Sanic's signature spelled out (it passes keywords): no argument packing per request.
        Request.__init__(self, url_bytes, headers, version, method, transport, app, head,
                         stream_id)
        self.received_at = time.perf_counter()
        """When the request was built (``time.perf_counter``): the request-latency metric
        starts here, so it needs no request middleware of its own."""
        self.request_id = sane_request_id(self.headers.get(HEADER)) or new_request_id()
        _CURRENT.set(self.request_id)

    async def respond(self, response: Any = None, *, status: int = 200,
                      headers: Any = None, content_type: str | None = None) -> Any:
        # Sanic's signature spelled out, and the base class named: no argument packing and no
        # super object on every request (Python 3.11).
        response = await Request.respond(self, response, status=status, headers=headers,
                                         content_type=content_type)
        # After the response middleware (which may replace the response), before anything is
        # sent: Sanic sends the headers on the first ``send``.
        if response is not None:
            response.headers[HEADER] = self.request_id
        # The next request on this keep-alive connection runs in the same task: no stale id on
        # whatever is logged before it is built.
        _CURRENT.set(None)
        return response


def install_request_id(app: Sanic[Any, Any]) -> None:
    """Give every request of ``app`` an id (see the module docstring)."""
    if not issubclass(app.request_class, IdentifiedRequest):
        app.request_class = IdentifiedRequest
