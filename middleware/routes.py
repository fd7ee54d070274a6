"""The route table: which Sanic route a cache rule applies to, bound once at start-up.

Rules name routes by URI template (``/api/posts/<post_id:int>``); at start-up every rule is
matched to the app's routes (a rule matching none is a configuration error) and the hooks then
find a request's rule with one dict lookup by route name. Automatic HEAD routes get their GET
rule (sanic-ext names them ``<route>_head``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from middleware.policy import cache_control_for
from middleware.rules import CacheRule, InvalidationRule, normalise_route_path
from middleware.stale import Freshness, stale_cache_control

__all__ = ["ReadRoute", "RouteTable"]


class ReadRoute:
    """A ``CacheRule`` with what the request path needs precomputed."""

    __slots__ = ("cache_control", "freshness", "hot_ttl", "query", "rule", "tags", "ttl")

    def __init__(self, rule: CacheRule) -> None:
        self.rule = rule
        self.query = frozenset(rule.query)
        self.tags = rule.compiled_tags
        self.ttl = rule.ttl
        self.hot_ttl = float(rule.ttl) if rule.local else None
        self.freshness = (Freshness(rule.ttl, rule.stale_while_revalidate, rule.stale_if_error)
                          if rule.storage_ttl > rule.ttl else None)
        """``None``: no stale window, the backend's TTL alone ends the entry (as before)."""
        self.cache_control = (
            stale_cache_control(rule.ttl, rule.stale_while_revalidate, rule.stale_if_error,
                                rule.per_user)
            if rule.advertise_stale else cache_control_for(rule.per_user))


class RouteTable:
    """Route name -> read rule, and (route name, method) -> invalidation rule."""

    def __init__(self, rules: Iterable[CacheRule | InvalidationRule]) -> None:
        self.rules = tuple(rules)
        for rule in self.rules:
            if not isinstance(rule, (CacheRule, InvalidationRule)):
                raise TypeError(f"not a CacheRule or InvalidationRule: {rule!r}")
        self.reads: dict[str, ReadRoute] = {}
        self.writes: dict[tuple[str, str], InvalidationRule] = {}

    def bind(self, routes: Iterable[Any]) -> None:
        """Map route names to rules (once, at start-up); a rule matching no route raises."""
        by_path: dict[str, list[Any]] = {}
        for route in routes:
            by_path.setdefault(normalise_route_path(route.path), []).append(route)
        reads: dict[str, ReadRoute] = {}
        writes: dict[tuple[str, str], InvalidationRule] = {}
        for rule in self.rules:
            methods = {"GET", "HEAD"} if isinstance(rule, CacheRule) else {rule.method}
            method = "GET" if isinstance(rule, CacheRule) else rule.method
            matched = [r for r in by_path.get(normalise_route_path(rule.path), [])
                       if methods & set(r.methods)]
            if not matched:
                raise ValueError(f"cache rule {method} {rule.path} matches no route")
            for route in matched:
                if isinstance(rule, CacheRule):
                    reads[route.name] = ReadRoute(rule)
                else:
                    writes[(route.name, method)] = rule
        self.reads, self.writes = reads, writes
