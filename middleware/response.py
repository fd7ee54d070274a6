"""The response a cache hit sends: the record's header lines encoded once, not per request
(once per content coding the record is served in: ``middleware.encoding``)."""

from __future__ import annotations

from collections.abc import Iterator

from sanic.response import HTTPResponse

from middleware.encoding import BR, GZIP, IDENTITY, etag_for_coding
from middleware.policy import STORED_HEADERS, etag_matches
from middleware.record import Record

__all__ = ["CachedResponse", "answer_stale"]

_Wire = tuple[tuple[str, tuple[bytes, bytes]], ...]
_CODING_LINES = {coding: (b"content-encoding", coding.encode()) for coding in (BR, GZIP)}


def _wire_headers(record: Record, cache_control: str, coding: str) -> _Wire:
    """The header lines every hit of ``record`` in ``coding`` sends, encoded (memoised on the
    record, per cache control and coding)."""
    memo: dict[tuple[str, str], _Wire] | None = record.wire  # type: ignore[assignment]
    if memo is None:
        memo = record.wire = {}
    wire = memo.get((cache_control, coding))
    if wire is None:
        lines = [("content-type", record.content_type),
                 *((name, value) for name, value in record.headers if name in STORED_HEADERS),
                 ("etag", etag_for_coding(record.etag, coding)),
                 ("cache-control", cache_control), ("x-cache", "HIT")]
        wire = memo[(cache_control, coding)] = tuple(
            (name, (name.encode(), value.encode())) for name, value in lines)
    return wire


class CachedResponse(HTTPResponse):
    """A hit: the record's headers go out as bytes prepared once per record.

    Sanic encodes and sanitises every header of every response (``processed_headers``), which
    cost a hit more than its Redis round trip. A record's text never holds CR, LF or NUL
    (``middleware.record``), so its lines are sent as they are. Headers set on this object
    (``Age`` and ``Cache-Status``, which change per request; ``X-Cache: STALE`` for a
    ``stale``
    hit; ``Content-Length``, ``Connection`` and whatever later middleware sets, which replaces
    the record's line of the same name) go through Sanic's sanitising, except a
    ``Content-Encoding`` still holding the coding this hit was built with.
    """

    __slots__ = ("coding", "wire")

    def __init__(self, record: Record, cache_control: str, age: int, cache_status: str,
                 stale: bool = False, coding: str = IDENTITY,
                 body: bytes | None = None) -> None:
        """``coding``: the content coding to send (``encoding.negotiate``), and ``body`` the
        record's body in it (``encoding.Representations``) when that is not the stored one."""
        if body is None:
            body = record.body
        headers = {"age": str(age), "cache-status": cache_status}
        if stale:
            headers["x-cache"] = "STALE"
        if coding != IDENTITY:
            # Not a prepared line: later response middleware (a compressing one) must see it.
            headers["content-encoding"] = coding
        super().__init__(body, status=record.status, headers=headers,
                         content_type=record.content_type)
        self.wire = _wire_headers(record, cache_control, coding)
        self.coding = coding

    @property
    def processed_headers(self) -> Iterator[tuple[bytes, bytes]]:
        headers = self.headers
        sanitize = self._sanitize_header_value
        for name, pair in self.wire:
            if name not in headers:
                yield pair
        coding = self.coding
        for name, value in headers.items():
            if name == "content-encoding" and value == coding:
                yield _CODING_LINES[coding]  # one of ours: known safe, encoded once
                continue
            text = value if type(value) is str else f"{value}"
            if name.isascii() and text.isascii() and text.isprintable():
                # Nothing to remove (Sanic strips only CR, LF and NUL, which are not
                # printable): the per-request lines (Age, Cache-Status, Content-Length,
                # X-Request-ID) skip two str.translate calls each.
                yield name.encode("ascii"), text.encode("ascii")
                continue
            yield sanitize(name).encode("ascii"), sanitize(text).encode(
                errors="surrogateescape")


def answer_stale(response: HTTPResponse, record: Record, *, age: int, cache_control: str,
                 cache_status: str, if_none_match: str | None, coding: str = IDENTITY,
                 body: bytes | None = None) -> None:
    """``stale-if-error``: turn the handler's error ``response`` into ``record``, in place.

    In place rather than a new response: a response middleware that returns a response ends
    Sanic's response middleware chain, and those registered before the cache must still run.
    ``coding`` and ``body``: as for ``CachedResponse``.
    """
    headers = response.headers
    for name in ("content-length", "content-type", "retry-after", "content-encoding"):
        headers.pop(name, None)
    headers.update(record.headers)
    etag = etag_for_coding(record.etag, coding)
    headers.update({"etag": etag, "age": str(age), "x-cache": "STALE",
                    "cache-control": cache_control, "cache-status": cache_status})
    if etag_matches(if_none_match, etag):
        response.status = 304
        response.body = b""
        return
    response.status = record.status
    response.content_type = record.content_type
    headers["content-type"] = record.content_type
    if coding != IDENTITY:
        headers["content-encoding"] = coding
    response.body = record.body if body is None else body
