"""The ``Cache-Status`` response header (RFC 9211), beside ``X-Cache``.

One list member, this cache's, whose parameters say what it did (RFC 9211 section 2):

==========================  ==================================================================
fresh hit                   ``<name>; hit; ttl=<remaining seconds>``
stale hit (while a          ``<name>; hit; ttl=<-seconds past the TTL>``: RFC 9211's own stale
background refresh runs)    hit; the client's request did not go forward, the refresh is apart
collapsed miss              ``<name>; hit; ttl=...; collapsed``: answered by a concurrent miss
miss                        ``<name>; fwd=uri-miss`` (plus ``; stored`` when stored)
miss with a stale entry     ``<name>; fwd=stale`` (plus ``; stored``)
client-forced refresh       ``<name>; fwd=request`` (``CACHE_HONOR_CLIENT_NO_CACHE``)
stale served on an error    ``<name>; fwd=stale; fwd-status=<the handler's 5xx>; ttl=<-s>``
bypass                      ``<name>; fwd=bypass`` (credentials, oversized tags)
cache backend failed        ``<name>; fwd=uri-miss; detail=backend-error``
==========================  ==================================================================

``ttl`` is computed per request (like ``Age``), so it is never part of a record's
pre-encoded header lines. The cache name (``CACHE_STATUS_NAME``) is sent as an sf-token when
it is one, else as an sf-string.
"""

from __future__ import annotations

import re

__all__ = ["CacheStatus", "serialise_name"]

_MAX_HIT_VALUES = 4096
"""A bound on ``CacheStatus.hit``'s memo (TTLs are bounded by the rules; this is a backstop)."""

_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*")


def serialise_name(name: str) -> str:
    """``name`` as an RFC 8941 bare item: a token when it is one, else a quoted string.

    Raises ``ValueError`` for an empty name or one outside printable ASCII (an sf-string
    cannot hold it).
    """
    if not name or any(not " " <= c <= "~" for c in name):
        raise ValueError(f"a Cache-Status name must be printable ASCII, got {name!r}")
    if _TOKEN.fullmatch(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class CacheStatus:
    """The header values of one cache, by outcome (the name is serialised once)."""

    __slots__ = ("_bypass", "_error", "_hits", "name")

    def __init__(self, name: str) -> None:
        self.name = serialise_name(name)
        self._bypass = f"{self.name}; fwd=bypass"
        self._error = f"{self.name}; fwd=uri-miss; detail=backend-error"
        self._hits: dict[int, str] = {}
        """``hit()`` by ``ttl``: formatted once per value (a few hundred: the rules' TTLs and
        stale windows), not on every hit."""

    def hit(self, ttl: int, collapsed: bool = False) -> str:
        """Served from the cache; ``ttl`` is negative for a stale hit."""
        if collapsed:
            return f"{self.name}; hit; ttl={ttl}; collapsed"
        value = self._hits.get(ttl)
        if value is None:
            value = f"{self.name}; hit; ttl={ttl}"
            if len(self._hits) < _MAX_HIT_VALUES:
                self._hits[ttl] = value
        return value

    def forwarded(self, *, stale: bool, refresh: bool, stored: bool) -> str:
        """The handler ran: no entry (``uri-miss``), only a stale one, or the client asked."""
        reason = "request" if refresh else "stale" if stale else "uri-miss"
        return f"{self.name}; fwd={reason}; stored" if stored else f"{self.name}; fwd={reason}"

    def stale_on_error(self, status: int, ttl: int) -> str:
        """The handler failed with ``status``; a stale entry was served instead."""
        return f"{self.name}; fwd=stale; fwd-status={status}; ttl={ttl}"

    def bypass(self) -> str:
        return self._bypass

    def error(self) -> str:
        """The cache's backend failed; served uncached."""
        return self._error
