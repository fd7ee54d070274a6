"""Content codings of cached bodies: Accept-Encoding negotiation, compression, ETags, Vary."""

from __future__ import annotations

import gzip
import random

import brotli
import pytest

from middleware.encoding import (
    BR, GZIP, IDENTITY, Representations, body_for, compress, etag_for_coding, identity_body,
    negotiate, vary_with_accept_encoding, with_vary,
)
from middleware.policy import etag_for
from middleware.record import Record


def feed_page(items: int = 20, seed: int = 1) -> bytes:
    """A JSON page shaped like the service's feed (about 6 KB at 20 items)."""
    rng = random.Random(seed)
    words = ("deploy latency queue index cache shipped coffee outage roadmap team thread "
             "build learned launch cloud rust feature hiring weekend postmortem").split()
    rows = []
    for i in range(items, 0, -1):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(8, 24)))
        rows.append(f'{{"id":{i},"content":"{text}","created_at":"2026-11-{i % 28 + 1:02d}T1'
                    f'{i % 10}:45:09.{rng.randint(0, 999999):06d}Z","updated_at":"2026-11-'
                    f'{i % 28 + 1:02d}T12:00:00Z","author":{{"id":{rng.randint(1, 99)},'
                    f'"username":"user{rng.randint(1, 99)}"}}}}')
    return ('{"items":[' + ",".join(rows) + '],"next_cursor":"WyIyMDI2LTExIl0"}').encode()


@pytest.mark.parametrize(("accept", "stored", "expected"), [
    # No header, an empty one, or nothing but identity: the body as it is.
    (None, BR, IDENTITY),
    ("", BR, IDENTITY),
    ("identity", BR, IDENTITY),
    # What browsers, curl, undici, Go and Java clients send.
    ("gzip, deflate, br, zstd", BR, BR),
    ("gzip, br", BR, BR),
    ("br", BR, BR),
    ("gzip", BR, GZIP),
    ("gzip, deflate", BR, GZIP),
    ("x-gzip", BR, GZIP),
    ("deflate", BR, IDENTITY),
    ("zstd", BR, IDENTITY),
    # Case and whitespace do not matter.
    (" GZIP ;Q=1 , BR ", BR, BR),
    # q-values decide; ties go to the stored bytes.
    ("gzip;q=1.0, br;q=0.5", BR, GZIP),
    ("gzip;q=0.5, br;q=0.5", BR, BR),
    ("br;q=0.1, identity;q=0.5", BR, IDENTITY),
    ("br;q=0, gzip", BR, GZIP),
    ("br;q=0", BR, IDENTITY),
    ("br;q=0.001", BR, BR),            # any positive weight beats the implicit identity
    # identity;q=0 excludes identity...
    ("identity;q=0, gzip", BR, GZIP),
    ("gzip;q=0.2, identity;q=0", BR, GZIP),
    # ...and when nothing is acceptable the header is disregarded (RFC 9110 12.5.3).
    ("identity;q=0", BR, IDENTITY),
    ("*;q=0", BR, IDENTITY),
    ("br;q=0, gzip;q=0, identity;q=0", BR, IDENTITY),
    # "*" covers every coding not named, identity included.
    ("*", BR, BR),
    ("*;q=0.5, gzip", BR, GZIP),
    ("*;q=0, gzip;q=0.1", BR, GZIP),
    ("*;q=0, identity", BR, IDENTITY),
    ("br;q=0, *", BR, GZIP),
    # Malformed weights count as "not acceptable", never as an error.
    ("br;q=abc, gzip", BR, GZIP),
    ("br;q=2, gzip;q=0.3", BR, GZIP),
    ("br;q=nan", BR, IDENTITY),
    (",;, br", BR, BR),
    # A body stored as it is (below the threshold) is always sent as it is.
    ("gzip, br", "", IDENTITY),
    ("identity;q=0, br", "", IDENTITY),
])
def test_negotiate(accept: str | None, stored: str, expected: str) -> None:
    assert negotiate(accept, stored) == expected


def test_a_long_odd_header_is_negotiated_too() -> None:
    assert negotiate("x" * 300 + ", gzip", BR) == GZIP


def test_a_feed_page_is_stored_brotli_encoded_and_small() -> None:
    page = feed_page()
    assert 5000 < len(page) < 8000
    coding, stored = compress(page, 1024)
    assert coding == BR and brotli.decompress(stored) == page
    assert len(stored) <= 0.35 * len(page)


@pytest.mark.parametrize(("body", "min_bytes"), [
    (b'{"id":1,"name":"one"}', 1024),      # below the threshold
    (feed_page(3), 10_000),                # ditto, with the threshold raised
    (random.Random(2).randbytes(4096), 1024),  # incompressible
    (b"", 0),
])
def test_small_or_incompressible_bodies_are_stored_as_they_are(body: bytes,
                                                               min_bytes: int) -> None:
    assert compress(body, min_bytes) == ("", body)


def test_the_threshold_is_inclusive() -> None:
    body = b"a" * 1024
    assert compress(body, 1024)[0] == BR
    assert compress(body, 1025)[0] == ""


def test_every_representation_decodes_to_the_same_body() -> None:
    page = feed_page()
    coding, stored = compress(page, 1024)
    assert body_for(BR, coding, stored) is stored
    assert body_for(IDENTITY, coding, stored) == page == identity_body(coding, stored)
    gzipped = body_for(GZIP, coding, stored)
    assert gzip.decompress(gzipped) == page
    assert gzipped == body_for(GZIP, coding, stored)  # deterministic: no timestamp
    assert body_for(IDENTITY, "", page) is page


def test_each_representation_has_its_own_strong_etag() -> None:
    etag = '"0123abcd"'
    tags = {etag_for_coding(etag, c) for c in (IDENTITY, BR, GZIP)}
    assert tags == {'"0123abcd"', '"0123abcd-br"', '"0123abcd-gzip"'}
    assert etag_for_coding(etag, "") == etag


@pytest.mark.parametrize(("vary", "expected"), [
    (None, "Accept-Encoding"),
    ("", "Accept-Encoding"),
    ("Cookie", "Cookie, Accept-Encoding"),
    ("Cookie, accept-encoding", "Cookie, accept-encoding"),
])
def test_vary_names_accept_encoding_once(vary: str | None, expected: str) -> None:
    assert vary_with_accept_encoding(vary) == expected


def test_with_vary_merges_into_one_vary_line() -> None:
    headers = (("x-total-count", "5"), ("vary", "Cookie"), ("vary", "Authorization"))
    assert with_vary(headers) == (("x-total-count", "5"),
                                  ("vary", "Cookie, Authorization, Accept-Encoding"))
    assert with_vary(()) == (("vary", "Accept-Encoding"),)


def record_of(page: bytes) -> Record:
    coding, stored = compress(page, 1024)
    return Record(status=200, stored_at=0.0, generations=(1,), content_type="application/json",
                  etag=etag_for(page), headers=(), body=stored, encoding=coding)


def test_representations_decode_once_per_body_and_coding() -> None:
    page = feed_page()
    kept = Representations(1 << 20)
    record = record_of(page)
    assert kept.body(record, BR) is record.body and len(kept) == 0
    plain = kept.body(record, IDENTITY)
    gzipped = kept.body(record, GZIP)
    assert plain == page and gzip.decompress(gzipped) == page
    # Another record of the same body (another key, another tier) shares them.
    assert kept.body(record_of(page), IDENTITY) is plain
    assert kept.body(record, GZIP) is gzipped
    assert len(kept) == 2 and kept.size > len(page)
    other = feed_page(seed=2)
    assert kept.body(record_of(other), IDENTITY) == other


def test_representations_stay_within_their_bound() -> None:
    pages = [feed_page(seed=seed) for seed in range(6)]
    kept = Representations(3 * len(pages[0]))
    for page in pages:
        assert kept.body(record_of(page), IDENTITY) == page
        assert kept.size <= kept.max_bytes
    assert 0 < len(kept) < len(pages)
    tiny = Representations(100)
    assert tiny.body(record_of(pages[0]), IDENTITY) == pages[0] and len(tiny) == 0


def test_a_body_stored_as_it_is_needs_no_representation() -> None:
    kept = Representations(1 << 20)
    record = record_of(b'{"small":true}')
    assert record.encoding == "" and kept.body(record, IDENTITY) is record.body
    assert len(kept) == 0
