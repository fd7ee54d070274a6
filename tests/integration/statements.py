"""Capture the SQL statements the service sends while a block runs (Tortoise's debug log)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def statements(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Yields a list that holds, after the block, the text of every statement sent in it."""
    sent: list[str] = []
    with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):
        caplog.clear()
        yield sent
        sent += [str(record.args[0]) if isinstance(record.args, tuple) and record.args
                 else record.getMessage()
                 for record in caplog.records if record.name == "tortoise.db_client"]
