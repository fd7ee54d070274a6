"""The outcome of one cache lookup, carried on the request from the request hook to the
response hook (``sanic``), and the outcomes it can have."""

from __future__ import annotations

from typing import Any

from middleware.backends.base import CacheBackend
from middleware.hot import HotState
from middleware.leases import Lease
from middleware.record import Record

__all__ = ["BYPASS", "HELPERS", "HIT", "MISS", "STALE", "Lookup"]

HIT = "hit"
MISS = "miss"
STALE = "stale"
"""Served past its TTL while one request refreshes it (``stale-while-revalidate``)."""
BYPASS = "bypass"
HELPERS = "helpers"


class Lookup:
    """The outcome of one lookup, kept on the request until the response hook."""

    __slots__ = ("collapsed", "future", "generations", "hot", "key", "lease", "outcome",
                 "record", "stale", "tier")

    def __init__(self, key: str, tier: CacheBackend, generations: tuple[int, ...]) -> None:
        self.key = key
        self.tier = tier
        self.generations = generations
        self.record: Record | None = None
        self.outcome = MISS
        self.future: Any = None
        self.hot: HotState | None = None
        """Set when the record may go to the hot tier (see ``hot.HotState``)."""
        self.stale: Record | None = None
        """On a miss: a current entry past its TTL, to serve if the handler fails."""
        self.collapsed = False
        """A hit answered by a concurrent miss's record (single flight)."""
        self.lease: Lease | None = None
        """The host-wide lease a leading miss holds (``middleware.leases``)."""
