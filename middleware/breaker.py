"""A circuit breaker around Redis: CLOSED -> OPEN -> HALF_OPEN -> CLOSED, injectable clock.

CLOSED: every call goes through; ``failure_threshold`` consecutive failures open it.
OPEN: no call goes through until ``reset_timeout`` seconds have passed.
HALF_OPEN: exactly one caller (the probe) is let through; its success closes the breaker, its
failure re-opens it. Only connection errors and timeouts are failures (the caller decides what
to report); a client hanging up is not.

A failure is counted once per *incident*: when the one pipelined connection times out with
twenty requests waiting on it, all twenty report the same incident and the breaker counts one
failure, so one stall cannot open it on its own (only ``failure_threshold`` separate ones do).

Each transition is logged once and reported to ``on_transition(old, new)``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker"]

log = logging.getLogger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class CircuitBreaker:
    """Tracks Redis health; ``allow()`` says whether a call may be made now."""

    __slots__ = ("_clock", "_failures", "_incidents", "_on_transition", "_opened_at",
                 "_probe_started", "_state", "failure_threshold", "name", "reset_timeout", "trips")

    def __init__(self, failure_threshold: int = 5, reset_timeout: float = 5.0, *,
                 clock: Callable[[], float] = time.monotonic,
                 on_transition: Callable[[str, str], None] | None = None,
                 name: str = "redis") -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.name = name
        self.trips = 0
        self._clock = clock
        self._on_transition = on_transition
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started = 0.0
        # The last few incidents counted (identity only), so their other waiters are not.
        self._incidents: deque[object] = deque(maxlen=8)

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"`` (an expired OPEN still reads ``open``)."""
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures counted so far."""
        return self._failures

    def allow(self) -> bool:
        """May a call be made now? In HALF_OPEN only the one probe gets ``True``.

        A probe that never reports back (its task was cancelled) is given up after
        ``reset_timeout``, so the breaker cannot stay stuck in HALF_OPEN.
        """
        state = self._state
        if state == CLOSED:
            return True
        now = self._clock()
        if state == OPEN:
            if now - self._opened_at < self.reset_timeout:
                return False
            self._transition(HALF_OPEN)
            self._probe_started = now
            return True
        if now - self._probe_started >= max(self.reset_timeout, 1.0):
            self._probe_started = now
            return True
        return False

    @property
    def probing(self) -> bool:
        """True while the single HALF_OPEN probe is in flight."""
        return self._state == HALF_OPEN

    def record_success(self) -> None:
        """A call succeeded: reset the count; a successful probe closes the breaker.

        While OPEN a success can only come from a call that started before the breaker
        opened (none is let through since): it is ignored, only a probe closes the breaker.
        """
        if self._state == OPEN:
            return
        self._failures = 0
        if self._state == HALF_OPEN:
            self._transition(CLOSED)

    def record_failure(self, incident: object | None = None) -> None:
        """A call failed with a connection error or timeout.

        ``incident``: the shared failure behind it (see the module docstring); a repeat of an
        incident counted recently is ignored. ``None`` counts as a new incident.
        """
        if incident is not None:
            if any(seen is incident for seen in self._incidents):
                return
            self._incidents.append(incident)
        self._failures += 1
        if self._state == HALF_OPEN or (
                self._state == CLOSED and self._failures >= self.failure_threshold):
            self._open()

    def trip(self) -> None:
        """Open now: a check outside the request path (the start-up PING) found the backend
        unreachable, so no request should wait for it to fail ``failure_threshold`` times.
        A closed-and-unused breaker only; an OPEN or probing one keeps its own timing."""
        if self._state == CLOSED:
            self._open()

    def _open(self) -> None:
        self._opened_at = self._clock()
        self.trips += 1
        self._transition(OPEN)

    def snapshot(self) -> dict[str, object]:
        """State for health/metrics endpoints."""
        retry_in = 0.0
        if self._state == OPEN:
            retry_in = max(0.0, self.reset_timeout - (self._clock() - self._opened_at))
        return {"state": self._state, "failures": self._failures,
                "failure_threshold": self.failure_threshold,
                "reset_timeout_seconds": self.reset_timeout, "trips": self.trips,
                "retry_in_seconds": round(retry_in, 3)}

    def _transition(self, new: str) -> None:
        old, self._state = self._state, new
        if new == OPEN:
            log.warning("Circuit breaker %s: %s -> %s after %d consecutive failure(s); "
                        "retrying in %.1fs", self.name, old, new, self._failures,
                        self.reset_timeout)
        else:
            log.info("Circuit breaker %s: %s -> %s", self.name, old, new)
        if self._on_transition is not None:
            self._on_transition(old, new)
