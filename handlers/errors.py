"""One error handler shapes every error body: ``{"error": {"status": ..., "message": ...}}``.

No stack trace ever reaches a client: unexpected exceptions are logged with their traceback and
answered with a generic 500 message.
"""

from __future__ import annotations

import logging

from sanic import Request, Sanic
from sanic.exceptions import HTTPException, RequestCancelled, SanicException
from sanic.handlers import ErrorHandler
from sanic.response import HTTPResponse

from handlers.responses import json_response

log = logging.getLogger(__name__)


class Conflict(HTTPException):
    """409: the request clashes with existing data (a taken username or email)."""

    status_code = 409
    quiet = True


def error_response(status: int, message: str, **extra: object) -> HTTPResponse:
    body: dict[str, object] = {"status": status, "message": message}
    body.update(extra)
    return json_response({"error": body}, status=status)


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
            if status >= 500:
                log.error("Server error on %s %s", request.method, request.path,
                          exc_info=exception)
                message = "internal server error"
            response = error_response(status, message)
            response.headers.update(headers)
            return response
        log.error("Unhandled error on %s %s", request.method, request.path, exc_info=exception)
        return error_response(500, "internal server error")


def install_error_handler(app: Sanic) -> None:
    app.error_handler = JSONErrorHandler()
