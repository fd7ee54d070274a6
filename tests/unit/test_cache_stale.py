"""Stale windows (RFC 5861): classification by age, rule validation, downstream directives."""

from __future__ import annotations

import pytest

from middleware.routes import ReadRoute
from middleware.rules import CacheRule
from middleware.stale import Freshness, Staleness, stale_cache_control

F = Freshness(ttl=30, while_revalidate=10, if_error=100)


@pytest.mark.parametrize(("age", "expected"), [
    (0, Staleness.FRESH), (29.99, Staleness.FRESH),
    (30, Staleness.REVALIDATE), (39.99, Staleness.REVALIDATE),
    (40, Staleness.IF_ERROR), (129.99, Staleness.IF_ERROR),
    (130, Staleness.EXPIRED), (10_000, Staleness.EXPIRED),
    (-5, Staleness.FRESH),  # another host's clock ahead of this one
])
def test_an_entry_is_classified_by_its_age(age: float, expected: Staleness) -> None:
    assert F.classify(age) is expected


def test_revalidate_wins_where_both_windows_apply() -> None:
    both = Freshness(30, while_revalidate=60, if_error=10)
    assert both.classify(35) is Staleness.REVALIDATE
    assert both.classify(89) is Staleness.REVALIDATE and both.classify(90) is Staleness.EXPIRED
    assert both.lifetime == 90 and F.lifetime == 130


def test_the_entry_is_stored_for_the_ttl_plus_the_longer_window() -> None:
    assert CacheRule("/a", ttl=30).storage_ttl == 30
    assert CacheRule("/a", ttl=30, stale_while_revalidate=5).storage_ttl == 35
    assert CacheRule("/a", ttl=30, stale_while_revalidate=5,
                     stale_if_error=600).storage_ttl == 630


def test_a_rule_without_windows_has_no_freshness_check() -> None:
    assert ReadRoute(CacheRule("/a", ttl=30)).freshness is None
    read = ReadRoute(CacheRule("/a", ttl=30, stale_if_error=60))
    assert read.freshness is not None and read.freshness.lifetime == 90


@pytest.mark.parametrize("kwargs", [
    {"stale_while_revalidate": -1},
    {"stale_if_error": -1},
    {"advertise_stale": True},  # nothing to advertise
    {"advertise_stale": True, "stale_if_error": 60, "tags": ("posts",)},
    {"advertise_stale": True, "stale_if_error": 60, "tags": lambda request: ()},
])
def test_bad_stale_settings_fail_at_start_up(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CacheRule("/a", ttl=30, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("swr", "sie", "per_user", "expected"), [
    (10, 100, False, "max-age=30, stale-while-revalidate=10, stale-if-error=100"),
    (0, 100, False, "max-age=30, stale-if-error=100"),
    (10, 0, True, "private, max-age=30, stale-while-revalidate=10"),
])
def test_downstream_directives(swr: int, sie: int, per_user: bool, expected: str) -> None:
    assert stale_cache_control(30, swr, sie, per_user) == expected


def test_only_advertising_rules_send_the_directives() -> None:
    assert ReadRoute(CacheRule("/a", ttl=30, stale_if_error=60,
                               tags=("a",))).cache_control == "no-cache"
    assert ReadRoute(CacheRule("/a", ttl=30, stale_if_error=60,
                               advertise_stale=True)).cache_control == (
        "max-age=30, stale-if-error=60")
