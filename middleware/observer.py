"""The hook the metrics code implements to watch the cache (all methods default to no-ops)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["CacheObserver", "NullObserver"]


class CacheObserver(Protocol):
    """Callbacks from the cache. Subclass it to inherit no-op defaults for what you skip.

    Calls happen on the request path: keep them cheap and non-blocking (counter increments).
    """

    def on_lookup(self, route: str, outcome: str) -> None:
        """A cacheable GET/HEAD was looked up; ``outcome`` is hit, miss, bypass or stale."""
        return None

    def on_store(self, route: str) -> None:
        """A response was stored."""
        return None

    def on_invalidate(self, tag: str) -> None:
        """A write cleared ``tag`` (once per tag, before hierarchical expansion)."""
        return None

    def on_error(self, route: str, operation: str) -> None:
        """A backend operation (lookup, store, invalidate, probe, helper) failed open."""
        return None

    def on_breaker_transition(self, old: str, new: str) -> None:
        """The circuit breaker changed state (closed, open, half_open)."""
        return None

    def on_backend_command(self, command: str, seconds: float) -> None:
        """A backend command (MGET, SET, INCR, PING) took ``seconds``."""
        return None


class NullObserver(CacheObserver):
    """The default observer: every callback does nothing."""
