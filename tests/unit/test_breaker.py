"""Breaker transitions with an injected clock (no sleeps)."""

from __future__ import annotations

import logging

import pytest

from middleware.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def transitions() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def breaker(clock: Clock, transitions: list[tuple[str, str]]) -> CircuitBreaker:
    return CircuitBreaker(3, 10.0, clock=clock,
                          on_transition=lambda old, new: transitions.append((old, new)))


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        assert breaker.allow()
        breaker.record_failure()


def test_starts_closed_and_allows(breaker: CircuitBreaker) -> None:
    assert breaker.state == CLOSED and breaker.allow()


def test_opens_after_n_consecutive_failures(breaker: CircuitBreaker,
                                            transitions: list[tuple[str, str]]) -> None:
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == CLOSED
    breaker.record_failure()
    assert breaker.state == OPEN
    assert transitions == [(CLOSED, OPEN)]


def test_a_late_success_does_not_close_an_open_breaker(
        breaker: CircuitBreaker, clock: Clock, transitions: list[tuple[str, str]]) -> None:
    """A slow call that started before the trip answers while OPEN: only a probe may close."""
    trip(breaker)
    breaker.record_success()
    assert breaker.state == OPEN and not breaker.allow()
    clock.now += 10.0
    assert breaker.allow() and breaker.state == HALF_OPEN
    breaker.record_success()
    assert breaker.state == CLOSED
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_success_resets_the_consecutive_count(breaker: CircuitBreaker) -> None:
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == CLOSED


def test_open_refuses_until_reset_timeout(breaker: CircuitBreaker, clock: Clock) -> None:
    trip(breaker)
    clock.now += 9.99
    assert not breaker.allow()
    assert breaker.state == OPEN


def test_exactly_one_probe_in_half_open(breaker: CircuitBreaker, clock: Clock) -> None:
    trip(breaker)
    clock.now += 10
    assert breaker.allow()
    assert breaker.state == HALF_OPEN and breaker.probing
    assert [breaker.allow() for _ in range(5)] == [False] * 5


def test_successful_probe_closes(breaker: CircuitBreaker, clock: Clock,
                                 transitions: list[tuple[str, str]]) -> None:
    trip(breaker)
    clock.now += 10
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == CLOSED and breaker.allow()
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_failed_probe_reopens_for_another_timeout(breaker: CircuitBreaker, clock: Clock) -> None:
    trip(breaker)
    clock.now += 10
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == OPEN
    clock.now += 5
    assert not breaker.allow()
    clock.now += 5
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert breaker.trips == 2


def test_a_lost_probe_is_replaced_after_the_timeout(breaker: CircuitBreaker,
                                                    clock: Clock) -> None:
    trip(breaker)
    clock.now += 10
    assert breaker.allow()          # the probe's task dies without reporting
    clock.now += 9
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()          # a new single probe
    assert not breaker.allow()


def test_each_transition_logged_once(breaker: CircuitBreaker, clock: Clock,
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="middleware.breaker")
    trip(breaker)
    for _ in range(50):
        assert not breaker.allow()
    records = [r for r in caplog.records if r.name == "middleware.breaker"]
    assert len(records) == 1 and "closed -> open" in records[0].getMessage()


def test_snapshot(breaker: CircuitBreaker, clock: Clock) -> None:
    trip(breaker)
    clock.now += 4
    snap = breaker.snapshot()
    assert snap["state"] == OPEN and snap["failures"] == 3
    assert snap["retry_in_seconds"] == pytest.approx(6.0)


def test_bad_threshold() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0)


def test_one_incident_counts_once(breaker: CircuitBreaker) -> None:
    """Every request waiting on one dropped connection reports the same incident."""
    stall = TimeoutError("Redis did not answer within 0.2 s")
    for _ in range(10):
        breaker.record_failure(stall)
    assert breaker.failures == 1 and breaker.state == CLOSED
    breaker.record_failure(TimeoutError("a second stall"))
    breaker.record_failure(None)  # an error without a shared incident is its own
    assert breaker.state == OPEN


def test_a_straggler_of_a_counted_incident_does_not_reopen_half_open(
        breaker: CircuitBreaker, clock: Clock) -> None:
    incidents = [ConnectionError(f"lost {i}") for i in range(3)]
    for incident in incidents:
        breaker.record_failure(incident)
    assert breaker.state == OPEN
    clock.now += 60
    assert breaker.allow() and breaker.state == HALF_OPEN
    breaker.record_failure(incidents[-1])  # a request from before the trip, failing late
    assert breaker.state == HALF_OPEN
    breaker.record_success()
    assert breaker.state == CLOSED


def test_trip_opens_a_closed_breaker_at_once_and_probes_after_the_reset_timeout(
        breaker: CircuitBreaker, clock: Clock, transitions: list[tuple[str, str]]) -> None:
    breaker.trip()
    assert breaker.state == OPEN and breaker.trips == 1
    assert not breaker.allow()
    clock.now += 10
    assert breaker.allow() and breaker.state == HALF_OPEN
    breaker.trip()  # a probing breaker keeps its own timing
    assert breaker.state == HALF_OPEN and breaker.trips == 1
    breaker.record_success()
    assert breaker.state == CLOSED
    assert transitions[0] == (CLOSED, OPEN)
