"""The binary record: round trip, and anything else is a RecordError (never unpickled)."""

from __future__ import annotations

import pickle
import struct

import pytest

from middleware.record import Record, RecordError, decode, encode


def make(**overrides: object) -> Record:
    values: dict[str, object] = dict(
        status=200, stored_at=1_700_000_000.25, generations=(3, 0, 7),
        content_type="application/json", etag='"abc"',
        headers=(("x-total-count", "5"), ("link", "<x>; rel=next")), body=b'{"a":1}')
    values.update(overrides)
    return Record(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("record", [
    make(),
    make(generations=(), headers=(), body=b""),
    make(body=bytes(range(256)) * 100),
    make(content_type="text/plain; charset=utf-8", headers=(("content-language", "fr"),)),
    make(generations=(2**62, 1)),
])
def test_round_trip(record: Record) -> None:
    data = encode(record)
    assert decode(data) == record


def test_record_is_compact() -> None:
    record = make()
    overhead = len(encode(record)) - len(record.body)
    assert overhead < 120


@pytest.mark.parametrize("data", [
    b"",
    b"RC",
    b"garbage that is long enough to hold a header but is not one",
    pickle.dumps({"status": 200}),
    encode(make())[:-1],
    encode(make()) + b"x",
    b"RC\x02" + encode(make())[3:],
    b"RX" + encode(make())[2:],
])
def test_bad_bytes_raise_record_error(data: bytes) -> None:
    with pytest.raises(RecordError):
        decode(data)


def test_non_utf8_text_raises_record_error() -> None:
    data = bytearray(encode(make(content_type="ab")))
    header_size = struct.calcsize("!2sBHdHBBHI")
    offset = header_size + 8 * 3
    data[offset:offset + 2] = b"\xff\xfe"
    with pytest.raises(RecordError):
        decode(bytes(data))


def test_unencodable_record_raises() -> None:
    with pytest.raises(RecordError):
        encode(make(content_type="x" * 300))


@pytest.mark.parametrize("headers", [
    (("link", "<a>\nset-cookie\0session=stolen"),),   # would decode as a second header
    (("link", "a\0b"),),
    (("x-next-cursor", "\udcff"),),                    # not encodable as UTF-8
])
def test_headers_that_would_not_round_trip_raise(headers: tuple[tuple[str, str], ...]) -> None:
    with pytest.raises(RecordError):
        encode(make(headers=headers))


@pytest.mark.parametrize("overrides", [
    {"headers": (("link", "<a>\rset-cookie: x"),)},    # a bare CR ends a header line too
    {"content_type": "text/plain\r\nset-cookie: x"},
    {"content_type": "text/plain\0"},
    {"etag": '"a"\r\nx: y'},
])
def test_text_that_could_end_a_header_line_is_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(RecordError):
        encode(make(**overrides))


@pytest.mark.parametrize("old, new", [
    (b"<x>; rel=next", b"<x>\r; rel=nex"),          # a CR planted in a header value
    (b"application/json", b"application/jso\n"),    # a separator in the content type
    (b"<x>; rel=next", b"<x>; rel=\0ext"),          # a NUL inside a value
])
def test_bytes_planted_in_the_store_cannot_add_a_header_line(old: bytes, new: bytes) -> None:
    data = encode(make())
    assert old in data and len(old) == len(new)
    with pytest.raises(RecordError):
        decode(data.replace(old, new))
