"""One error handler shapes every error body: ``{"error": {"status": ..., "message": ...}}``.

No stack trace ever reaches a client: unexpected exceptions are logged with their traceback and
answered with a generic 500 message.
"""

from __future__ import annotations

import logging

from sanic import Request, Sanic
from sanic.constants import HTTP_METHODS
from sanic.exceptions import (
    HTTPException,
    MethodNotAllowed,
    NotFound,
    RequestCancelled,
    SanicException,
)
from sanic.handlers import ErrorHandler
from sanic.response import HTTPResponse

from handlers.responses import json_response
from models.db_retry import DatabaseUnavailable

log = logging.getLogger(__name__)

DATABASE_RETRY_AFTER = 5
"""Seconds a client is asked to wait when the database is unavailable (``Retry-After``)."""


class Conflict(HTTPException):
    """409: the request clashes with existing data (a taken username or email)."""

    status_code = 409
    quiet = True


def error_response(status: int, message: str, **extra: object) -> HTTPResponse:
    body: dict[str, object] = {"status": status, "message": message}
    body.update(extra)
    return json_response({"error": body}, status=status)


def allowed_methods(request: Request) -> list[str]:
    """The methods the request's path has routes for.

    sanic-routing drops the allowed methods of routes with path parameters when it raises its
    405 (``/api/posts/1``, unlike ``/api/posts``), so the ``Allow`` header RFC 9110 section
    15.5.6 requires is rebuilt here by asking the router once per method.
    """
    host = request.headers.getone("host", None)
    allowed = []
    for method in HTTP_METHODS:
        try:
            request.app.router.get(request.path, str(method), host)
        except (NotFound, MethodNotAllowed):
            continue
        allowed.append(str(method))
    return allowed


class JSONErrorHandler(ErrorHandler):
    """Renders every exception as the service's JSON error body."""

    def default(self, request: Request, exception: Exception) -> HTTPResponse:
        if isinstance(exception, RequestCancelled):
            # The client went away (or the server is stopping): nobody reads this response.
            log.debug("Request cancelled: %s %s", request.method, request.path)
            return error_response(503, "request cancelled")
        if isinstance(exception, SanicException):
            status = int(exception.status_code)
            message = str(exception) or "error"
            headers = dict(getattr(exception, "headers", None) or {})
            if isinstance(exception, MethodNotAllowed) and not any(
                    name.lower() == "allow" for name in headers):
                headers["Allow"] = ", ".join(allowed_methods(request))
            if status >= 500:
                log.error("Server error on %s %s", request.method, request.path,
                          exc_info=exception)
                message = "internal server error"
            response = error_response(status, message)
            response.headers.update(headers)
            return response
        if isinstance(exception, DatabaseUnavailable):
            # PostgreSQL restarting or down for longer than DATABASE_RETRY_SECONDS: a
            # condition to retry, not a bug (RFC 9110 503).
            log.warning("Database unavailable on %s %s: %s", request.method, request.path,
                        exception)
            response = error_response(503, "database unavailable; retry shortly")
            response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER)
            return response
        log.error("Unhandled error on %s %s", request.method, request.path, exc_info=exception)
        return error_response(500, "internal server error")


def install_error_handler(app: Sanic) -> None:
    app.error_handler = JSONErrorHandler()
