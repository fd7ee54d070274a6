"""middleware.leases: a miss leased by one process is waited out by the others, never by itself."""

from __future__ import annotations

import asyncio
import time
from array import array

import pytest

from middleware.leases import HostLeases


def _workers(slots: int = 64) -> tuple[HostLeases, HostLeases]:
    """Two processes' views of one shared array (here: in-process arrays, distinct pids)."""
    deadlines, owners = array("q", [0] * slots), array("q", [0] * slots)
    first, second = HostLeases(deadlines, owners), HostLeases(deadlines, owners)
    second._pid = first._pid + 1
    return first, second


def test_a_lease_is_seen_by_other_processes_only() -> None:
    first, second = _workers()
    lease = first.claim("redis|k", timeout=5)
    assert first.held_elsewhere("redis|k") is None  # its own lease: the in-process flight
    assert second.held_elsewhere("redis|k") == lease
    first.release(lease)
    assert second.held_elsewhere("redis|k") is None


def test_an_expired_lease_is_not_held_and_an_old_release_keeps_a_new_lease() -> None:
    first, second = _workers()
    old = first.claim("redis|k", timeout=0)
    assert second.held_elsewhere("redis|k") is None  # deadline passed
    new = second.claim("redis|k", timeout=5)
    first.release(old)  # the expired leader finishing late must not end the new lease
    assert first.held_elsewhere("redis|k") == new


async def test_a_waiter_wakes_when_the_lease_is_released() -> None:
    first, second = _workers()
    lease = first.claim("redis|k", timeout=5)
    held = second.held_elsewhere("redis|k")
    assert held is not None
    asyncio.get_running_loop().call_later(0.02, first.release, lease)
    started = time.monotonic()
    await second.wait(held, timeout=5)
    assert time.monotonic() - started < 1
    assert second.waited == 1


async def test_a_waiter_gives_up_at_its_timeout() -> None:
    first, second = _workers()
    first.claim("redis|k", timeout=30)
    held = second.held_elsewhere("redis|k")
    assert held is not None
    started = time.monotonic()
    await second.wait(held, timeout=0.05)
    assert 0.04 <= time.monotonic() - started < 1


def test_shared_parts_attach() -> None:
    leases = HostLeases.attach(HostLeases.create_shared(slots=8))
    assert leases.held_elsewhere("x") is None


def test_mismatched_arrays_are_refused() -> None:
    with pytest.raises(ValueError):
        HostLeases(array("q", [0]), array("q", [0, 0]))
