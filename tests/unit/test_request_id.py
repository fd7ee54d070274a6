"""Which request ids are echoed, and where the id goes on a log line (observability)."""

from __future__ import annotations

import logging
import os
import sys
import uuid

import pytest

from observability.logging import RedactingFormatter
from observability.request_id import MAX_LENGTH, new_request_id, sane_request_id


@pytest.mark.parametrize("value, sane", [
    ("0f8fad5b-d9cb-469f-a165-70867728950e", True), ("abc", True), ("a" * MAX_LENGTH, True),
    ("Root=1-5759e988:x.y_z+/=", True), (None, False), ("", False),
    ("a" * (MAX_LENGTH + 1), False), ("a b", False), ("a\r\nSet-Cookie: x", False),
    ('a"b', False), ("a,b", False), ("é", False), ("a\x00", False),
])
def test_sane_request_id(value: str | None, sane: bool) -> None:
    assert sane_request_id(value) == (value if sane else None)


def test_the_id_follows_the_message_and_precedes_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("once",),
                                   sys.exc_info())
    record.request_id = "r-1"
    lines = RedactingFormatter().format(record).splitlines()
    assert lines[0].endswith("ERROR x: failed once request_id=r-1")
    assert lines[-1] == "ValueError: boom"
    record.request_id = None
    assert RedactingFormatter().format(record).splitlines()[0].endswith("x: failed once")


def test_generated_ids_are_uuid4_hex() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_child_draws_its_own_ids() -> None:
    new_request_id()  # the parent now holds a block the child inherits
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert len(child) == 32 and child != new_request_id()
