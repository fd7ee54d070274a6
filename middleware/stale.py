"""Serving stale entries safely: ``stale-while-revalidate`` and ``stale-if-error`` (RFC 5861).

A ``CacheRule`` may allow an entry to be served past its TTL, for two reasons:

- ``stale_while_revalidate=N``: for N seconds after the TTL a lookup answers the stale entry
  at once, and one request per key and process starts a background refresh
  (``middleware.refresh``) that runs the handler and stores the result;
- ``stale_if_error=N``: for N seconds after the TTL a lookup is a miss that keeps the stale
  entry at hand; when the handler answers 5xx (the database is down, a statement timed out)
  the stale entry is served instead of the error.

Both serve an entry **only while its generations are current**: the check is the same one a
hit passes (``record.generations`` equal to the counters read in the same round trip). An
entry a write invalidated is never served, stale or not; a stale entry only misses changes
that bypass the invalidation rules (the reason a TTL exists at all). The entry is stored for
``ttl + max(windows)`` so that it still exists to be served; its age is read from the
record's ``stored_at`` with the cache's (injectable) wall clock. The hot tier keeps serving
fresh entries only, so a stale entry always goes through the tier that reads generations.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Freshness", "Staleness", "stale_cache_control"]


class Staleness(Enum):
    """What an entry whose generations are current may be used for, by its age."""

    FRESH = "fresh"
    """Within the TTL: a hit."""
    REVALIDATE = "revalidate"
    """Within ``stale_while_revalidate`` past the TTL: served, refreshed in the background."""
    IF_ERROR = "if_error"
    """Within ``stale_if_error`` past the TTL: a miss, served only if the handler fails."""
    EXPIRED = "expired"
    """Past every window: a miss."""


class Freshness:
    """A rule's TTL and stale windows, in seconds."""

    __slots__ = ("if_error", "lifetime", "ttl", "while_revalidate")

    def __init__(self, ttl: float, while_revalidate: float = 0, if_error: float = 0) -> None:
        if ttl <= 0 or while_revalidate < 0 or if_error < 0:
            raise ValueError("ttl must be > 0 and the stale windows >= 0")
        self.ttl = ttl
        self.while_revalidate = while_revalidate
        self.if_error = if_error
        self.lifetime = ttl + max(while_revalidate, if_error)
        """How long the entry is stored: the TTL plus the longer window."""

    def __repr__(self) -> str:
        return (f"Freshness(ttl={self.ttl}, while_revalidate={self.while_revalidate}, "
                f"if_error={self.if_error})")

    def classify(self, age: float) -> Staleness:
        """What an entry ``age`` seconds old may be used for (``stale-while-revalidate``
        wins where both windows apply: it answers without waiting for the handler)."""
        if age < self.ttl:
            return Staleness.FRESH
        past = age - self.ttl
        if past < self.while_revalidate:
            return Staleness.REVALIDATE
        if past < self.if_error:
            return Staleness.IF_ERROR
        return Staleness.EXPIRED


def stale_cache_control(ttl: int, while_revalidate: int, if_error: int, per_user: bool) -> str:
    """The ``Cache-Control`` of a rule that lets downstream caches serve stale (RFC 5861).

    ``max-age`` is the TTL (with ``Age`` on hits a downstream cache computes what is left):
    the RFC 5861 windows count from the end of freshness, and ``no-cache`` (the default for
    cached routes) would leave a downstream cache no freshness to extend.
    """
    parts = ["private"] if per_user else []
    parts.append(f"max-age={ttl}")
    if while_revalidate:
        parts.append(f"stale-while-revalidate={while_revalidate}")
    if if_error:
        parts.append(f"stale-if-error={if_error}")
    return ", ".join(parts)
