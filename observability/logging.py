"""One log line per event: ``time level logger: message``, secrets redacted.

Sanic's own ``LOGGING_CONFIG_DEFAULTS`` attaches a handler to each ``sanic.*`` logger; together
with a root handler every Sanic line came out twice.  Here the ``sanic.*`` loggers keep no handler
of their own and propagate to the root, which has exactly one console handler.  The function is
idempotent and leaves other handlers on the root alone (pytest's ``caplog`` keeps working), so the
app factory can call it in every process that builds the app.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import TextIO

from observability.request_id import RequestIdFilter

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SANIC_LOGGERS = ("sanic.root", "sanic.error", "sanic.access", "sanic.server", "sanic.websockets")

# A password in a URL (``scheme://user:password@host``) and a bearer token or JWT, wherever they
# appear in a formatted line, including tracebacks.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]+(?P<at>@)")
_BEARER = re.compile(r"(?i)(?P<head>bearer\s+)[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+")
REDACTED = "***"


def redact(text: str) -> str:
    """Mask URL passwords, bearer tokens and JWTs in ``text``."""
    text = _URL_PASSWORD.sub(rf"\g<head>{REDACTED}\g<at>", text)
    text = _BEARER.sub(rf"\g<head>{REDACTED}", text)
    return _JWT.sub(REDACTED, text)


class RedactingFormatter(logging.Formatter):
    """``FORMAT`` with UTC ISO-8601 times (milliseconds) and secrets masked; a line written
    while a request is handled names it: ``... logger: message request_id=<id>`` (the id is
    set by ``observability.request_id.RequestIdFilter`` on the handler).

    A last line of defence: code should not log secrets in the first place (the tests check the
    raw records too), but a driver's exception text can quote a URL.
    """

    converter = time.gmtime

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def formatTime(self, record: logging.LogRecord,  # noqa: N802 - logging's API name
                   datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's API
        # The id goes after the message and before a traceback (which format() appends).
        line = super().formatMessage(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} request_id={request_id}" if request_id else line

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one console handler this module owns on the root logger (found again by type).

    Without an explicit stream it writes to whatever ``sys.stderr`` is at emit time, so a
    stream swapped and closed since (test capture, a daemoniser) is never written to.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream or sys.stderr)
        self.follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self.follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


def configure_logging(level: str | int = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Install (or update) the single console handler and route Sanic's loggers through it.

    Returns the handler.  Safe to call many times: there is never more than one.
    """
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _ConsoleHandler)), None)
    if handler is None:
        handler = _ConsoleHandler(stream)
        root.addHandler(handler)
    elif stream is not None:
        handler.setStream(stream)
        handler.follow_stderr = False
    handler.setFormatter(RedactingFormatter())
    if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
        handler.addFilter(RequestIdFilter())
    root.setLevel(level)
    for name in SANIC_LOGGERS:
        sanic_logger = logging.getLogger(name)
        for existing in list(sanic_logger.handlers):
            sanic_logger.removeHandler(existing)
        sanic_logger.propagate = True
        # Sanic sets its own levels in LOGGING_CONFIG_DEFAULTS; follow the service's level, but
        # keep websockets as quiet as Sanic does.
        sanic_logger.setLevel(logging.WARNING if name == "sanic.websockets" else logging.NOTSET)
    return handler
