"""CORS for browser scripts on other origins (``CORS_ORIGINS``), made to keep the cache working.

The CORS headers are computed per request by a response hook, on cache hits too, and the cache
never stores them (``middleware.policy.STORED_HEADERS`` keeps no ``Access-Control-*``): one
entry serves every origin, and an origin that is not allowed can never be served another
origin's ``Access-Control-Allow-Origin`` from the cache. Every response says ``Vary: Origin``
(except with ``*``, where the answer is the same for all) so browsers and downstream caches keep
per-origin copies; the cache is told it handles that ``Vary`` itself
(``CacheSettings.vary_handled``), so such responses stay storable.

Why not sanic-ext's CORS: it replaces any ``Vary`` with ``origin`` (dropping, say,
``Accept-Encoding``) and adds it only to responses that got an allowed origin, so the no-Origin
copy a downstream cache keeps would be served to browsers. Preflights are answered by sanic-ext's
automatic ``OPTIONS`` routes (204, on when CORS is); this hook adds their headers.

Bearer tokens, no cookies: ``Access-Control-Allow-Credentials`` is never sent (which is what
makes ``*`` safe), and ``Authorization`` is listed by name because ``*`` does not cover it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sanic import Request, Sanic
from sanic.response import BaseHTTPResponse

from middleware.response import CachedResponse

__all__ = ["ALLOW_HEADERS", "ALLOW_METHODS", "EXPOSE_HEADERS", "MAX_AGE", "Cors", "install_cors"]

ALLOW_ORIGIN = "access-control-allow-origin"
ALLOW_METHODS = "GET, HEAD, POST, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = "authorization, content-type, if-none-match, x-request-id"
EXPOSE_HEADERS = "etag, age, x-cache, cache-status, x-request-id, retry-after"
"""Response headers scripts may read (CORS exposes only a few simple ones by default)."""
MAX_AGE = 600
"""Seconds a browser may reuse a preflight's answer (Chromium caps it at 7200)."""

# Response middleware runs from the lowest priority up: this hook runs before the cache's
# (priority 0), so a miss's Vary: Origin is in the record it stores and every hit replays it.
_PRIORITY = -100


def _with_origin(vary: str | None) -> str:
    if not vary:
        return "origin"
    if any(field.strip().lower() in {"origin", "*"} for field in vary.split(",")):
        return vary
    return f"{vary}, origin"


class Cors:
    """The response hook for one set of allowed origins (``("*",)``: any)."""

    __slots__ = ("any_origin", "origins")

    def __init__(self, origins: Iterable[str]) -> None:
        self.origins = frozenset(origins)
        self.any_origin = "*" in self.origins

    async def on_response(self, request: Request, response: BaseHTTPResponse) -> None:
        headers = response.headers
        # A hit replays its record's Vary, which this hook completed before the miss stored it.
        if not self.any_origin and not isinstance(response, CachedResponse):
            headers["vary"] = _with_origin(headers.get("vary"))
        origin = request.headers.get("origin")
        if origin is None or not (self.any_origin or origin in self.origins):
            return
        headers[ALLOW_ORIGIN] = "*" if self.any_origin else origin
        if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
            headers["access-control-allow-methods"] = ALLOW_METHODS
            headers["access-control-allow-headers"] = ALLOW_HEADERS
            headers["access-control-max-age"] = str(MAX_AGE)
        else:
            headers["access-control-expose-headers"] = EXPOSE_HEADERS


def install_cors(app: Sanic[Any, Any], origins: Iterable[str]) -> Cors:
    """Answer CORS requests from ``origins`` (``CORS_ORIGINS``) on every route of ``app``.

    The app must also enable sanic-ext's automatic ``OPTIONS`` routes (the preflights) and
    give the cache ``vary_handled={"origin"}`` (see the module docstring).
    """
    cors = Cors(origins)
    app.register_middleware(cors.on_response, "response", priority=_PRIORITY)
    return cors
