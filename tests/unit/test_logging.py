"""Log format, one line per event, and secret redaction (observability/logging.py)."""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Iterator

import pytest

from app import create_app
from observability.logging import SANIC_LOGGERS, RedactingFormatter, configure_logging, redact
from settings import Settings, SettingsError

LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: .+$")


@pytest.fixture
def clean_logging() -> Iterator[None]:
    """Restore the root and sanic loggers as they were (this module reconfigures them)."""
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    saved = {name: (list(logging.getLogger(name).handlers), logging.getLogger(name).level,
                    logging.getLogger(name).propagate) for name in SANIC_LOGGERS}
    # The tests make their own console handler (on a StringIO), never reusing the session's.
    root.handlers[:] = [h for h in root.handlers if not isinstance(h.formatter, RedactingFormatter)]
    yield
    root.handlers[:] = saved_root[0]
    root.setLevel(saved_root[1])
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


@pytest.mark.usefixtures("clean_logging")
def test_configure_logging_is_idempotent_and_keeps_foreign_handlers() -> None:
    foreign = logging.NullHandler()
    logging.getLogger().addHandler(foreign)
    first = configure_logging("INFO", io.StringIO())
    second = configure_logging("DEBUG")
    assert first is second
    root = logging.getLogger()
    assert foreign in root.handlers
    assert [h for h in root.handlers if isinstance(h.formatter, RedactingFormatter)] == [first]
    assert root.level == logging.DEBUG


@pytest.mark.usefixtures("clean_logging")
def test_one_line_per_event_after_the_app_is_built(tmp_path: object) -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    # Building the app used to apply Sanic's LOGGING_CONFIG_DEFAULTS: a handler on every
    # sanic.* logger on top of the root one, so each line came out twice.
    create_app(Settings(database_url=f"sqlite://{tmp_path}/db.sqlite3",
                        secret_key="test-secret-key-0123456789abcdef"))
    for name in SANIC_LOGGERS:
        assert logging.getLogger(name).handlers == []
    logging.getLogger("sanic.root").info("started %s", "once")
    logging.getLogger("sanic.server").warning("worker %d", 7)
    logging.getLogger("models.db").info("Database connected: %s", "SQLite (x)")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert all(LINE.match(line) for line in lines), lines
    assert lines[0].endswith(" INFO sanic.root: started once")
    assert lines[1].endswith(" WARNING sanic.server: worker 7")


@pytest.mark.usefixtures("clean_logging")
def test_level_filters_debug_lines() -> None:
    stream = io.StringIO()
    configure_logging("WARNING", stream)
    logging.getLogger("app").info("hidden")
    logging.getLogger("app").warning("shown")
    assert stream.getvalue().count("\n") == 1
    assert "shown" in stream.getvalue()


@pytest.mark.parametrize(("raw", "expected"), [
    ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
    ("rediss://default:AbC123xyz@eu1.upstash.io:6379", "rediss://default:***@eu1.upstash.io:6379"),
    ("postgres://app:pa%40ss@db:5432/app", "postgres://app:***@db:5432/app"),
    ("error connecting to redis://host:6379", "error connecting to redis://host:6379"),
    ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
    ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl end", "token *** end"),
    ("nothing secret here: user@example.com", "nothing secret here: user@example.com"),
])
def test_redact(raw: str, expected: str) -> None:
    assert redact(raw) == expected


def test_formatter_redacts_messages_and_tracebacks() -> None:
    try:
        raise ConnectionError("cannot reach redis://:hunter2hunter2@10.0.0.1:6379")
    except ConnectionError:
        record = logging.LogRecord("middleware", logging.ERROR, __file__, 1,
                                   "Redis %s failed", ("rediss://u:topsecret@h:1",), None)
        record.exc_info = sys.exc_info()
    text = RedactingFormatter().format(record)
    assert "hunter2hunter2" not in text and "topsecret" not in text
    assert "ERROR middleware: Redis rediss://u:***@h:1 failed" in text
    assert "Traceback" in text


@pytest.mark.parametrize(("raw", "level"),
                         [("", "INFO"), ("debug", "DEBUG"), (" Warning ", "WARNING")])
def test_log_level_setting(raw: str, level: str) -> None:
    assert Settings.from_env({"LOG_LEVEL": raw}).log_level == level


def test_bad_log_level_fails_at_start_up() -> None:
    with pytest.raises(SettingsError, match="LOG_LEVEL"):
        Settings.from_env({"LOG_LEVEL": "verbose"})
