"""What may be read from and stored in the cache."""

from __future__ import annotations

import pytest

from middleware.policy import (
    bypass_reason, cache_control_for, client_wants_refresh, etag_for, etag_matches, is_storable,
    stored_headers,
)

CAP = 1000


@pytest.mark.parametrize(("status", "headers", "length", "expected"), [
    (200, {}, 10, True),
    (200, {"cache-control": "no-cache"}, 10, True),
    (200, {}, CAP, True),
    (200, {}, CAP + 1, False),
    (201, {}, 10, False),
    (204, {}, 0, False),
    (301, {}, 10, False),
    (404, {}, 10, False),
    (500, {}, 10, False),
    (200, {"set-cookie": "a=b"}, 10, False),
    (200, {"cache-control": "private"}, 10, False),
    (200, {"cache-control": "max-age=0, Private"}, 10, False),
    (200, {"cache-control": "no-store"}, 10, False),
    (200, {"cache-control": "public, max-age=60"}, 10, True),
    (200, {"vary": "Accept-Language"}, 10, False),
    (200, {"vary": "*"}, 10, False),
    (200, {"vary": "Cookie, Accept"}, 10, False),
    (200, {"vary": "Authorization, cookie"}, 10, True),
    # Encoded by another middleware for one client: never stored (see is_storable).
    (200, {"content-encoding": "gzip"}, 10, False),
    (200, {"content-encoding": "br", "vary": "Accept-Encoding"}, 10, False),
    (200, {"content-encoding": "identity"}, 10, True),
])
def test_is_storable(status: int, headers: dict[str, str], length: int, expected: bool) -> None:
    assert is_storable(status, headers, length, CAP) is expected


@pytest.mark.parametrize(("creds", "per_user", "public", "identity", "expected"), [
    (False, False, False, None, None),
    (True, False, False, None, "credentials"),
    (True, False, True, None, None),
    (False, True, False, None, "anonymous"),
    (True, True, False, None, "anonymous"),
    (True, True, False, "7", None),
    (False, True, False, "7", None),
])
def test_bypass_reason(creds: bool, per_user: bool, public: bool, identity: str | None,
                       expected: str | None) -> None:
    assert bypass_reason(has_credentials=creds, per_user=per_user, public=public,
                         identity=identity) == expected


@pytest.mark.parametrize(("cache_control", "pragma", "honor", "expected"), [
    ("no-cache", None, False, False),
    ("no-cache", None, True, True),
    ("max-age=0", None, True, True),
    ("no-store", None, True, True),
    ("max-age=60", None, True, False),
    (None, "no-cache", True, True),
    (None, None, True, False),
])
def test_client_wants_refresh(cache_control: str | None, pragma: str | None, honor: bool,
                              expected: bool) -> None:
    assert client_wants_refresh(cache_control, pragma, honor) is expected


def test_cache_control_never_lets_browsers_keep_data() -> None:
    assert cache_control_for(False) == "no-cache"
    assert cache_control_for(True) == "private, no-cache"


def test_etag_is_strong_and_stable() -> None:
    tag = etag_for(b'{"a":1}')
    assert tag.startswith('"') and tag.endswith('"') and not tag.startswith("W/")
    assert tag == etag_for(b'{"a":1}')
    assert tag != etag_for(b'{"a":2}')
    # Fixed digest: identical across processes and restarts (no hash seed, no time).
    assert etag_for(b"") == '"cae66941d9efbd404e4d88758ea67670"'


@pytest.mark.parametrize(("header", "expected"), [
    (None, False),
    ('"abc"', True),
    ('W/"abc"', True),
    ('"x", "abc"', True),
    ('"x"', False),
    ("*", True),
    ("abc", False),
])
def test_etag_matches(header: str | None, expected: bool) -> None:
    assert etag_matches(header, '"abc"') is expected


def test_stored_headers_keep_only_the_few_that_matter() -> None:
    kept = stored_headers([("X-Total-Count", "5"), ("Set-Cookie", "a=b"), ("Link", "<x>"),
                           ("Date", "now"), ("Content-Length", "3")])
    assert kept == (("x-total-count", "5"), ("link", "<x>"))


def test_repeated_response_header_lines_are_all_read() -> None:
    """A second ``Cache-Control``/``Vary`` line counts as much as the first."""
    from sanic.compat import Header
    private = Header([("cache-control", "max-age=60"), ("cache-control", "private")])
    assert is_storable(200, private, 10, CAP) is False
    varying = Header([("vary", "Cookie"), ("vary", "Accept-Language")])
    assert is_storable(200, varying, 10, CAP) is False
    assert is_storable(200, Header([("vary", "Cookie"), ("vary", "Authorization")]), 10, CAP)


def test_vary_on_a_header_the_app_handles_per_request_is_storable() -> None:
    varying = {"vary": "Accept-Language, Origin"}
    assert is_storable(200, {"vary": "origin"}, 10, CAP) is False
    assert is_storable(200, {"vary": "origin"}, 10, CAP, vary_handled={"origin"}) is True
    assert is_storable(200, varying, 10, CAP, vary_handled={"origin"}) is False
    assert is_storable(200, {"vary": "*"}, 10, CAP, vary_handled={"origin"}) is False


def test_cors_headers_are_never_stored() -> None:
    """They are computed per request: a stored one would reach other origins."""
    kept = stored_headers([("Access-Control-Allow-Origin", "https://a.example"),
                           ("Access-Control-Expose-Headers", "etag"), ("Vary", "origin")])
    assert kept == (("vary", "origin"),)
