"""The stored record: a compact binary layout (a struct header, then raw bytes). Never pickle.

Layout (network byte order)::

    magic "RC" | version u8 | status u16 | stored_at f64 | n_generations u16 | len(content type) u8
    | len(etag) u8 | len(encoding) u8 | len(headers) u16 | len(body) u32 | generations i64 * n
    | content type | etag | encoding | headers ("name\\0value" joined by "\\n", UTF-8) | body

``encoding`` is the body's content coding (``br``; empty: stored as it is) and ``etag`` the
identity representation's (``middleware.encoding``). Version 1 (no encoding) is not read:
an entry of an older release is a miss, overwritten by the next store.

No text field holds a CR, and only the header block its own NUL and LF separators, in either
direction (``encode`` refuses, ``decode`` rejects): a record's headers can be written to the
wire as they are, and bytes planted in Redis cannot add a header line.

``decode`` checks every length against the data; anything that does not fit raises
``RecordError``, which the cache treats as a miss (and overwrites the entry).
"""

from __future__ import annotations

import struct

__all__ = ["FORMAT_VERSION", "DecodedRecords", "Record", "RecordError", "decode", "encode"]

FORMAT_VERSION = 2
_MAGIC = b"RC"
_HEADER = struct.Struct("!2sBHdHBBBHI")
_FIELDS = ("body", "content_type", "encoding", "etag", "generations", "headers", "status",
           "stored_at")


class RecordError(ValueError):
    """Bytes that are not a record of this format version."""


class Record:
    """One cached response (or application value) and the generations it was computed under."""

    __slots__ = ("body", "content_type", "encoding", "etag", "generations", "headers", "status",
                 "stored_at", "wire")

    def __init__(self, *, status: int, stored_at: float, generations: tuple[int, ...],
                 content_type: str, etag: str, headers: tuple[tuple[str, str], ...],
                 body: bytes, encoding: str = "") -> None:
        self.status = status
        self.stored_at = stored_at
        self.generations = generations
        self.content_type = content_type
        self.etag = etag
        self.headers = headers
        self.body = body
        self.encoding = encoding
        """The content coding of ``body`` (``br``), or empty: stored as it is."""
        self.wire: object = None
        """Memo for the HTTP layer (the encoded header lines of a hit); not stored."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _FIELDS)

    def __repr__(self) -> str:
        return (f"Record(status={self.status}, generations={self.generations}, "
                f"etag={self.etag}, body={len(self.body)} bytes {self.encoding or 'identity'})")


def encode(record: Record) -> bytes:
    """Serialise ``record``; raises ``RecordError`` if a field does not fit the layout."""
    lines = [f"{name}\0{value}" for name, value in record.headers]
    if any(line.count("\0") != 1 or "\n" in line or "\r" in line for line in lines):
        # The separators would shift on decode: a value could smuggle in another header.
        raise RecordError("record header contains a NUL, CR or LF")
    texts = (record.content_type, record.etag, record.encoding)
    if any(c in text for text in texts for c in "\r\n\0"):
        raise RecordError("record content type, ETag or encoding contains a NUL, CR or LF")
    try:
        headers = "\n".join(lines).encode()
        ctype = record.content_type.encode()
        etag = record.etag.encode()
        coding = record.encoding.encode()
    except UnicodeEncodeError as exc:
        raise RecordError(str(exc)) from exc
    n = len(record.generations)
    if max(len(ctype), len(etag), len(coding)) > 255 or len(headers) > 65535 or n > 65535:
        raise RecordError("record field too long for the layout")
    try:
        head = _HEADER.pack(_MAGIC, FORMAT_VERSION, record.status, record.stored_at, n,
                            len(ctype), len(etag), len(coding), len(headers), len(record.body))
        gens = struct.pack(f"!{n}q", *record.generations)
    except struct.error as exc:
        raise RecordError(str(exc)) from exc
    return b"".join((head, gens, ctype, etag, coding, headers, record.body))


def decode(data: bytes) -> Record:
    """Parse bytes written by ``encode``; raises ``RecordError`` on anything else."""
    try:
        magic, version, status, stored_at, n, lc, le, lk, lh, lb = _HEADER.unpack_from(data)
    except struct.error as exc:
        raise RecordError("truncated record header") from exc
    if magic != _MAGIC or version != FORMAT_VERSION:
        raise RecordError(f"not a v{FORMAT_VERSION} record")
    offset = _HEADER.size
    fixed = lc + le + lk  # the text fields before the header block
    texts = data[offset + 8 * n:offset + 8 * n + fixed + lh]
    if b"\r" in texts or (fixed and (b"\n" in texts[:fixed] or b"\0" in texts[:fixed])):
        raise RecordError("record text holds a CR, or a separator outside the header block")
    if len(data) != offset + 8 * n + fixed + lh + lb:
        raise RecordError("record length does not match its header")
    generations = struct.unpack_from(f"!{n}q", data, offset)
    offset += 8 * n
    try:
        ctype = data[offset:offset + lc].decode()
        offset += lc
        etag = data[offset:offset + le].decode()
        offset += le
        coding = data[offset:offset + lk].decode()
        offset += lk
        raw_headers = data[offset:offset + lh].decode()
    except UnicodeDecodeError as exc:
        raise RecordError("record text is not UTF-8") from exc
    offset += lh
    headers: list[tuple[str, str]] = []
    if raw_headers:
        for line in raw_headers.split("\n"):
            name, sep, value = line.partition("\0")
            if not sep or "\0" in value:
                raise RecordError("malformed record header line")
            headers.append((name, value))
    return Record(status=status, stored_at=stored_at, generations=generations,
                  content_type=ctype, etag=etag, headers=tuple(headers),
                  body=bytes(data[offset:]), encoding=coding)


class DecodedRecords:
    """Records already decoded, by key, valid while the store returns the same bytes object.

    Bounded by ``max_bytes`` (each entry counts its bytes twice: the stored bytes it keeps
    alive, and the record's body); past that it starts afresh.
    """

    __slots__ = ("_entries", "max_bytes", "size")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: dict[str, tuple[bytes, Record]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, raw: bytes) -> Record | None:
        """The record decoded from this very ``raw`` object, if it is remembered."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] is raw else None

    def put(self, key: str, raw: bytes, record: Record) -> None:
        size = 2 * len(raw)
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= 2 * len(old[0])
        if self.size + size > self.max_bytes:
            self._entries.clear()
            self.size = 0
        self._entries[key] = (raw, record)
        self.size += size
