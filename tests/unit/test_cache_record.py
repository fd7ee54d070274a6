"""The binary record: round trip, and anything else is a RecordError (never unpickled)."""

from __future__ import annotations

import pickle
import struct

import pytest

from middleware.record import FORMAT_VERSION, Record, RecordError, decode, encode


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
    make(body=b"\x1b\x00\x00compressed", encoding="br",
         headers=(("vary", "Accept-Encoding"),)),
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
    b"RC" + bytes([FORMAT_VERSION + 1]) + encode(make())[3:],
    b"RX" + encode(make())[2:],
])
def test_bad_bytes_raise_record_error(data: bytes) -> None:
    with pytest.raises(RecordError):
        decode(data)


def test_non_utf8_text_raises_record_error() -> None:
    data = bytearray(encode(make(content_type="ab")))
    header_size = struct.calcsize("!2sBHdHBBBHI")
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
    {"encoding": "br\r\nset-cookie: x"},
    {"encoding": "br\0"},
])
def test_text_that_could_end_a_header_line_is_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(RecordError):
        encode(make(**overrides))


@pytest.mark.parametrize("old, new", [
    (b"<x>; rel=next", b"<x>\r; rel=nex"),          # a CR planted in a header value
    (b"application/json", b"application/jso\n"),    # a separator in the content type
    (b"<x>; rel=next", b"<x>; rel=\0ext"),          # a NUL inside a value
    (b'"abc"br', b'"abc"b\n'),                      # a separator in the encoding
])
def test_bytes_planted_in_the_store_cannot_add_a_header_line(old: bytes, new: bytes) -> None:
    data = encode(make(encoding="br"))
    assert old in data and len(old) == len(new)
    with pytest.raises(RecordError):
        decode(data.replace(old, new))


def version_1(record: Record) -> bytes:
    """``record`` in the layout of format version 1 (no encoding field), as older releases
    wrote it."""
    headers = "\n".join(f"{n}\0{v}" for n, v in record.headers).encode()
    n = len(record.generations)
    head = struct.pack("!2sBHdHBBHI", b"RC", 1, record.status, record.stored_at, n,
                       len(record.content_type), len(record.etag), len(headers),
                       len(record.body))
    return b"".join((head, struct.pack(f"!{n}q", *record.generations),
                     record.content_type.encode(), record.etag.encode(), headers, record.body))


def test_a_version_1_record_is_refused_not_misread() -> None:
    assert FORMAT_VERSION == 2
    with pytest.raises(RecordError, match="not a v2 record"):
        decode(version_1(make()))


def test_the_encoding_round_trips_and_defaults_to_stored_as_is() -> None:
    assert decode(encode(make())).encoding == ""
    assert decode(encode(make(encoding="br"))).encoding == "br"
    assert make(encoding="br") != make()
