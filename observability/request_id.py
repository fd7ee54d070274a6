"""``X-Request-ID``: one id per request, on its response and on the log lines it causes.

A client's (or a proxy's: Render, Heroku and nginx set one) id is kept when it is sane, so a
request can be followed across services; otherwise one is generated (uuid4, 32 hex digits).
Sane means 1 to ``MAX_LENGTH`` characters of ``[A-Za-z0-9._:+/=-]``: the id is echoed into a
header and written into logs, so it must not carry spaces, quotes, commas or control characters
(header splitting, forged log fields) nor be large enough to flood either.

The id lives in a ``ContextVar`` for the time the request is handled: Sanic runs the request
middleware, the handler and the response middleware of one request in one task, so every log
call on the way sees it (``RequestIdFilter`` copies it onto the record). The response hook runs
for cache hits (a short-circuit) and error responses too, so every response carries the header.
"""

from __future__ import annotations

import logging
import os
import re
from contextvars import ContextVar
from typing import Any

from sanic import Request, Sanic
from sanic.response import BaseHTTPResponse

__all__ = ["HEADER", "MAX_LENGTH", "RequestIdFilter", "current_request_id",
           "install_request_id", "new_request_id", "sane_request_id"]

HEADER = "x-request-id"
MAX_LENGTH = 128
"""Longest id echoed (a UUID is 36 characters, a W3C trace id 32)."""

_SANE = re.compile(r"[A-Za-z0-9._:+/=-]{1,%d}" % MAX_LENGTH)
_CURRENT: ContextVar[str | None] = ContextVar("request_id", default=None)

# Before every other middleware (the cache's lookup logs too), and its response hook last, after
# the cache's: Sanic runs response middleware in reverse priority order.
_PRIORITY = 1_000_000


def sane_request_id(value: str | None) -> str | None:
    """``value`` when it may be echoed and logged as it is, else None."""
    if value and _SANE.fullmatch(value):
        return value
    return None


def new_request_id() -> str:
    """A random UUID version 4 as 32 hex digits (``uuid.uuid4().hex``'s format, at a fifth of
    its cost: it runs on every request, cache hits included)."""
    raw = bytearray(os.urandom(16))
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


async def _on_request(request: Request) -> None:
    request_id = sane_request_id(request.headers.get(HEADER)) or new_request_id()
    request.ctx.request_id = request_id
    _CURRENT.set(request_id)


async def _on_response(request: Request, response: BaseHTTPResponse) -> None:
    # Routing errors (404, 405) skip the request middleware: they get an id here.
    request_id = getattr(request.ctx, "request_id", None)
    if request_id is None:
        request_id = sane_request_id(request.headers.get(HEADER)) or new_request_id()
    response.headers[HEADER] = request_id
    # The next request on this keep-alive connection runs in the same task: no stale id on
    # whatever is logged before its own request middleware runs.
    _CURRENT.set(None)


def install_request_id(app: Sanic[Any, Any]) -> None:
    """Give every request of ``app`` an id (see the module docstring)."""
    app.register_middleware(_on_request, "request", priority=_PRIORITY)
    app.register_middleware(_on_response, "response", priority=_PRIORITY)
