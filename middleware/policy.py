"""What may be read from and written to the cache: pure predicates over headers, no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping

__all__ = [
    "STORED_HEADERS", "VARY_KEYED", "WRITE_METHODS", "bypass_reason", "cache_control_for",
    "client_wants_refresh", "etag_for", "etag_matches", "is_storable", "stored_headers",
]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""Methods whose 2xx responses clear the tags of their invalidation rule."""

STORED_HEADERS = frozenset({
    "content-language", "content-disposition", "link", "vary", "x-total-count", "x-next-cursor",
})
"""Response headers kept in a record (besides content type); everything else is dropped.
Never ``Access-Control-*``: they depend on the request's Origin, which the key does not cover."""

SHARED_CACHE_CONTROL = "no-cache"
"""Shared routes: browsers must revalidate with the ETag, so they never keep invalidated data."""
PRIVATE_CACHE_CONTROL = "private, no-cache"
"""Per-user routes: no shared cache (proxy/CDN) may keep them, and browsers revalidate."""


def cache_control_for(per_user: bool) -> str:
    """The ``Cache-Control`` a cached route answers with."""
    return PRIVATE_CACHE_CONTROL if per_user else SHARED_CACHE_CONTROL


def bypass_reason(*, has_credentials: bool, per_user: bool, public: bool,
                  identity: str | None) -> str | None:
    """Why a GET must not touch the cache, or ``None`` when it may.

    Credentials (``Authorization``/``Cookie``) never read or write a shared entry unless the
    rule says the response does not depend on them (``public``). A per-user route needs an
    identity, which then becomes part of the key.
    """
    if per_user:
        return None if identity else "anonymous"
    if has_credentials and not public:
        return "credentials"
    return None


def _directives(value: str | None) -> dict[str, str]:
    if not value:
        return {}
    out: dict[str, str] = {}
    for part in value.split(","):
        name, _, arg = part.partition("=")
        out[name.strip().lower()] = arg.strip().strip('"')
    return out


def client_wants_refresh(cache_control: str | None, pragma: str | None, honor: bool) -> bool:
    """True when the client asked for a fresh answer and the settings honour that."""
    if not honor:
        return False
    directives = _directives(cache_control)
    if "no-cache" in directives or "no-store" in directives or directives.get("max-age") == "0":
        return True
    return not cache_control and (pragma or "").strip().lower() == "no-cache"


VARY_KEYED = frozenset({"authorization", "cookie"})
"""Request headers a response may ``Vary`` on and still be stored: requests carrying them
bypass shared entries (or are keyed by identity on per-user routes), so the key covers them."""


def _joined(headers: Mapping[str, str], name: str) -> str | None:
    """Every line of header ``name`` joined with commas (a response may repeat it)."""
    getall = getattr(headers, "getall", None)
    if getall is None:
        return headers.get(name)
    return ",".join(getall(name, [])) or None


def is_storable(status: int, headers: Mapping[str, str], body_length: int,
                max_body_bytes: int, vary_handled: Collection[str] = ()) -> bool:
    """Only a 200 without ``Set-Cookie``/``private``/``no-store``, within the size cap, and
    not varying on a request header the key does not cover (``Vary: Accept-Language``, ``*``).

    Nor a body that already has a ``Content-Encoding`` (another compressing middleware ran
    first): it was encoded for one client's ``Accept-Encoding``, and the record keeps only
    the coding the cache applied itself (``middleware.encoding``), so stored without the
    header it would reach other clients as garbage. The cache compresses on its own.

    ``vary_handled``: request headers (lower case) the app declares it handles outside the
    stored record: their effect is added to every response, hits included, in headers the
    record never keeps (``STORED_HEADERS``). CORS is the case: ``Vary: Origin`` while
    ``Access-Control-Allow-Origin`` is computed per request (see ``CacheSettings.vary_handled``).
    """
    if status != 200 or body_length > max_body_bytes:
        return False
    if "set-cookie" in headers:
        return False
    coding = headers.get("content-encoding")
    if coding and coding.strip().lower() != "identity":
        return False
    vary = _joined(headers, "vary")
    if vary and any(name not in VARY_KEYED and name not in vary_handled
                    for name in (field.strip().lower() for field in vary.split(","))
                    if name):
        return False
    directives = _directives(_joined(headers, "cache-control"))
    return "private" not in directives and "no-store" not in directives


def stored_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The few response headers worth keeping in a record (see ``STORED_HEADERS``)."""
    return tuple((name.lower(), value) for name, value in headers
                 if name.lower() in STORED_HEADERS)


def etag_for(body: bytes) -> str:
    """A strong ETag: the quoted blake2b digest of the body (same in every process)."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """``If-None-Match`` uses the weak comparison (RFC 9110 13.1.2): ``W/`` is ignored."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False
