"""Content codings of cached bodies: compressed once when stored, chosen per request.

A body of at least ``CACHE_COMPRESS_MIN_BYTES`` is stored brotli-encoded (quality 2) and
nothing else; each request then gets the representation its ``Accept-Encoding`` prefers
(RFC 9110 12.5.3):

- ``br``: the stored bytes as they are (no CPU);
- ``gzip`` (a client that takes gzip but not br, such as Go's and Java's HTTP clients): the
  stored body decoded and gzip-encoded at level 1;
- ``identity`` (no ``Accept-Encoding``, or neither coding): the stored body decoded.

Decoded and re-encoded bodies are kept per worker in ``Representations`` (bounded, keyed by
ETag), so only the first such hit of a body in a worker pays for the decode.

Why one stored coding, brotli, at quality 2 (a 6,588-byte feed page of the demo data, one
core of the development machine, µs per call in a tight loop):

=============  ======  ======  ==================================================
coding         bytes   encode  note
=============  ======  ======  ==================================================
identity        6,588       -
gzip -1         2,112      25
gzip -6         1,996      39
br -1           2,112      22
br -2           2,031      32  0.31x: the stored coding
br -3           2,002      40
br -4           1,977      69
br -5           1,847      93  0.28x: the stored coding until 2026-12
br -11          ~1,670  6,000+
=============  ======  ======  ==================================================

The loop flatters the higher qualities: from quality 4 up brotli's hash tables are large
(about 1 MiB at 5) and set up per call, and inside the service, where other work has
evicted them from the CPU caches, they cost far more. In the bench's compression pair (all
misses, hot tier, 1 worker, CPU per request with ``gzip, br`` minus without compression,
two rounds each on the same database) quality 5 added 211 µs to a miss, quality 2 45 µs
and quality 1 77 µs (noise: 1 is no slower than 2 in the loop), while the bytes per feed hit
on the wire went from 0.31x (quality 5) to 0.34x (quality 2) and 0.35x (quality 1) of the
uncompressed ones. In the full 3-round runs: quality 5 +215 µs (649 vs 434), quality 2
+99 µs (556 vs 457). A miss is what a reader waits for after every write, so quality 2.
Decoding is quality-independent (about 11 µs for a feed page).

Storing gzip too would double what Redis holds (0.60x instead of 0.31x: over the 0.35x the
cache targets) to save gzip-only clients one re-encoding per body and worker; storing gzip
alone would cost the same as brotli at quality 1 with no margin under 0.35x of the bytes
per hit, and clients that take br (browsers, Node's fetch, ``curl --compressed``) get the
stored bytes with no work at all.

When this module came (quality 5, the demo feed page, one worker, Redis with the hot tier,
``wrk -t1 -c32``): bytes per hit on the wire, headers included, 6,789 before and 2,161 for
``gzip, br`` (0.32x); ``MEMORY USAGE`` of the entry 7,240 before, 2,120 (0.29x). The bench's
compression pair (``bench/results/latest.md``) has today's numbers.

Below ``CACHE_COMPRESS_MIN_BYTES`` (default 1 KiB) a body is stored as it is: a 364-byte post
shrinks to 202 bytes, of which ``Content-Encoding`` and ``Vary`` take back 45, while every
identity hit would pay a decode. A body that brotli does not shrink by 1/8 (already
compressed data) is stored as it is too.

ETags: the record keeps the identity representation's (the body's blake2b digest); the
brotli and gzip representations append ``-br`` / ``-gzip`` inside the quotes, so each
representation has its own strong ETag and a 304 answers only the one the client holds.
"""

from __future__ import annotations

import functools
import zlib

import brotli

from middleware.record import Record

__all__ = ["BR", "GZIP", "IDENTITY", "QUALITY", "Representations", "body_for", "compress",
           "etag_for_coding", "identity_body", "negotiate", "vary_with_accept_encoding",
           "with_vary"]

BR = "br"
GZIP = "gzip"
IDENTITY = "identity"
QUALITY = 2
"""Brotli quality of stored bodies (see the module docstring's measurements)."""
_GZIP_LEVEL = 1
_MIN_SAVING = 8
"""A compressed body must be at most 7/8 of the original to be stored compressed."""

_TRANSCODABLE = {BR: (GZIP,)}
"""Codings a stored coding can be re-encoded to per request (besides identity)."""


def compress(body: bytes, min_bytes: int) -> tuple[str, bytes]:
    """``(coding, stored body)``: brotli when ``body`` is large and compressible enough,
    else ``("", body)`` (stored as it is)."""
    if len(body) < min_bytes:
        return "", body
    packed: bytes = brotli.compress(body, quality=QUALITY)
    if len(packed) * _MIN_SAVING > len(body) * (_MIN_SAVING - 1):
        return "", body
    return BR, packed


def identity_body(coding: str, body: bytes) -> bytes:
    """The decoded form of a body stored with ``coding`` (``""``: as it is)."""
    if coding == BR:
        return bytes(brotli.decompress(body))
    return body


def body_for(coding: str, stored: str, body: bytes) -> bytes:
    """The body to send in ``coding`` (from ``negotiate``), given the stored one."""
    if coding == stored or not stored:
        return body
    plain = identity_body(stored, body)
    if coding == GZIP:
        # A window no larger than the body (setting it up is much of the cost on small
        # bodies, and a larger one finds nothing more); 16 + bits: the gzip wrapper, with
        # mtime 0, so the same body always gzips to the same bytes.
        bits = min(15, max(9, len(plain).bit_length()))
        return zlib.compress(plain, _GZIP_LEVEL, 16 + bits)
    return plain


def etag_for_coding(etag: str, coding: str) -> str:
    """The strong ETag of the ``coding`` representation of a body whose identity ETag is
    ``etag``: ``"<digest>-br"``; the identity one unchanged."""
    if coding == IDENTITY or not coding:
        return etag
    return f"{etag[:-1]}-{coding}\""


def vary_with_accept_encoding(vary: str | None) -> str:
    """``vary`` with ``Accept-Encoding`` added (once)."""
    if not vary:
        return "Accept-Encoding"
    if any(f.strip().lower() == "accept-encoding" for f in vary.split(",")):
        return vary
    return f"{vary}, Accept-Encoding"


def with_vary(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Stored ``headers`` (lower-case names) with ``Accept-Encoding`` in their one ``Vary``:
    every representation of an encoded body says it was negotiated, identity included."""
    varies = [value for name, value in headers if name == "vary"]
    vary = vary_with_accept_encoding(", ".join(varies) if varies else None)
    return (*((n, v) for n, v in headers if n != "vary"), ("vary", vary))


def _weights(accept_encoding: str) -> dict[str, float]:
    """``{coding: q}`` of an ``Accept-Encoding`` value; malformed weights count as 0."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        if not name:
            continue
        if name == "x-gzip":
            name = GZIP
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:  # also NaN
                    q = 0.0
        # A repeated coding keeps its highest weight (RFC 9110 says nothing; be generous).
        weights[name] = max(q, weights.get(name, 0.0))
    return weights


def _negotiate(accept_encoding: str | None, stored: str) -> str:
    if accept_encoding is None or not stored:
        # No header: "any coding is acceptable", but identity is what every client reads.
        return IDENTITY
    weights = _weights(accept_encoding)
    star = weights.get("*")

    def weight(coding: str) -> float:
        if coding in weights:
            return weights[coding]
        if star is not None:
            return star
        # Identity is acceptable unless excluded (``identity;q=0``, or ``*;q=0``); below
        # any coding the client names, so an explicit ``gzip`` wins over it.
        return 0.001 if coding == IDENTITY else 0.0

    best, best_q = IDENTITY, 0.0
    # Ties go to the cheapest to serve: the stored bytes, then a re-encoding, then a decode.
    for coding in (stored, *_TRANSCODABLE.get(stored, ()), IDENTITY):
        q = weight(coding)
        if q > best_q:
            best, best_q = coding, q
    # Nothing acceptable: disregard the header and send identity (RFC 9110 12.5.3 allows it;
    # a 406 would turn a cache hit into a client error).
    return best


class Representations:
    """Bodies decoded or re-encoded from stored ones, kept per worker so that identity and
    gzip-only clients cost a hit no more than a brotli one (``encoding.body_for`` is 11 µs
    to decode a feed page, 60 µs to gzip it).

    Keyed by representation ETag: the identity ETag is the body's digest, so an entry serves
    every record with the same body, from any tier, and can never be served for another one.
    Bounded by ``max_bytes`` (bodies and keys); past that it starts afresh.
    """

    __slots__ = ("_entries", "max_bytes", "size")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def body(self, record: Record, coding: str) -> bytes:
        """``record``'s body in ``coding`` (from ``negotiate``)."""
        stored = record.encoding
        if not stored or coding == stored:
            return record.body
        key = etag_for_coding(record.etag, coding)
        out = self._entries.get(key)
        if out is None:
            out = body_for(coding, stored, record.body)
            size = len(out) + len(key)
            if size <= self.max_bytes:
                if self.size + size > self.max_bytes:
                    self._entries.clear()
                    self.size = 0
                self._entries[key] = out
                self.size += size
        return out


_cached_negotiate = functools.lru_cache(maxsize=512)(_negotiate)


def negotiate(accept_encoding: str | None, stored: str) -> str:
    """The coding to send a body stored with ``stored`` in (``br``, ``gzip`` or ``identity``),
    by the request's ``Accept-Encoding`` q-values (RFC 9110 12.5.3). Memoised: clients send
    a handful of distinct values, and this runs on every hit (odd long values are not kept)."""
    if accept_encoding is not None and len(accept_encoding) > 200:
        return _negotiate(accept_encoding, stored)
    return _cached_negotiate(accept_encoding, stored)
