"""Attempt limits: a refusal is remembered until the window frees a slot, so a flood of refused
attempts costs a dictionary lookup each, not a trip through the rate-limit storage."""

from __future__ import annotations

import time
from typing import Any

import pytest

from handlers.throttle import AttemptLimits, TooManyRequests


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingLimiter:
    """Wraps the library's limiter to count how often the storage is consulted."""

    def __init__(self, limiter: Any) -> None:
        self._limiter = limiter
        self.hits = 0

    def hit(self, *args: Any) -> bool:
        self.hits += 1
        return bool(self._limiter.hit(*args))

    def get_window_stats(self, *args: Any) -> Any:
        return self._limiter.get_window_stats(*args)


def _limits(per_client: str = "3/minute", per_username: str = "2/minute",
            **kwargs: Any) -> tuple[AttemptLimits, CountingLimiter]:
    limits = AttemptLimits(per_client, per_username, **kwargs)
    counting = CountingLimiter(limits._limiter)
    limits._limiter = counting  # type: ignore[assignment]
    return limits, counting


def test_refusals_until_the_window_frees_a_slot_skip_the_storage() -> None:
    clock = Clock(time.time())
    limits, counting = _limits(clock=clock)
    for _ in range(3):
        limits.client("10.0.0.1")
    with pytest.raises(TooManyRequests) as first:
        limits.client("10.0.0.1")
    assert counting.hits == 4
    retry_after = int(first.value.headers["retry-after"])
    assert 55 <= retry_after <= 61
    clock.now += 30
    for _ in range(100):
        with pytest.raises(TooManyRequests) as again:
            limits.client("10.0.0.1")
    assert counting.hits == 4  # answered from the remembered refusal
    assert 25 <= int(again.value.headers["retry-after"]) <= 31
    # Another address, and the same name as a username, have their own budgets.
    limits.client("10.0.0.2")
    limits.username("10.0.0.1")
    assert counting.hits == 6


def test_after_the_remembered_reset_the_storage_decides_again() -> None:
    clock = Clock(time.time())
    limits, counting = _limits(clock=clock)
    limits.username("ann")
    limits.username("ANN")  # usernames are limited case-insensitively
    with pytest.raises(TooManyRequests):
        limits.username("Ann")
    assert counting.hits == 3
    clock.now += 61  # our clock says the window has passed; the library's still holds it
    with pytest.raises(TooManyRequests):
        limits.username("ann")
    assert counting.hits == 4  # asked the storage, which still refuses (and is remembered)
    limits.username("bob")
    assert counting.hits == 5


def test_remembered_refusals_are_bounded() -> None:
    clock = Clock(time.time())
    limits, counting = _limits(per_client="1/minute", clock=clock, remembered=8)
    for n in range(20):
        address = f"10.0.0.{n}"
        limits.client(address)
        with pytest.raises(TooManyRequests):
            limits.client(address)
    assert len(limits._refused_until) <= 8
    assert counting.hits == 40
    # The storage still refuses what the memo no longer holds.
    with pytest.raises(TooManyRequests):
        limits.client("10.0.0.0")
    clock.now += 61
    # Expired refusals make room again.
    with pytest.raises(TooManyRequests):
        limits.client("10.0.0.1")
    assert len(limits._refused_until) <= 8
