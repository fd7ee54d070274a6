"""MemoryBackend: LRU bounded by entries and bytes, TTL with an injected clock."""

from __future__ import annotations

import pytest

from middleware.backends.memory import MemoryBackend


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_ttl_expiry(clock: Clock) -> None:
    backend = MemoryBackend(clock=clock)
    await backend.set("k", b"v", 10)
    clock.now = 9.99
    assert await backend.get_many(["k"]) == [b"v"]
    clock.now = 10.0
    assert await backend.get_many(["k"]) == [None]
    assert len(backend) == 0 and backend.size_bytes == 0


async def test_lru_by_entries(clock: Clock) -> None:
    backend = MemoryBackend(max_entries=2, clock=clock)
    await backend.set("a", b"1", 60)
    await backend.set("b", b"2", 60)
    assert await backend.get_many(["a"]) == [b"1"]  # a is now most recently used
    await backend.set("c", b"3", 60)
    assert await backend.get_many(["a", "b", "c"]) == [b"1", None, b"3"]
    assert backend.evictions == 1


async def test_lru_by_bytes(clock: Clock) -> None:
    backend = MemoryBackend(max_entries=100, max_bytes=30, clock=clock)
    await backend.set("a", b"x" * 10, 60)   # 11 bytes with the key
    await backend.set("b", b"x" * 10, 60)   # 22
    await backend.set("c", b"x" * 10, 60)   # 33 > 30: a goes
    assert await backend.get_many(["a", "b", "c"]) == [None, b"x" * 10, b"x" * 10]
    assert backend.size_bytes == 22


async def test_value_larger_than_the_cap_is_not_stored(clock: Clock) -> None:
    backend = MemoryBackend(max_bytes=10, clock=clock)
    await backend.set("a", b"x" * 20, 60)
    assert await backend.get_many(["a"]) == [None]


async def test_overwrite_keeps_byte_count(clock: Clock) -> None:
    backend = MemoryBackend(clock=clock)
    await backend.set("a", b"xx", 60)
    await backend.set("a", b"xxxx", 60)
    assert backend.size_bytes == 5 and len(backend) == 1


async def test_counters_survive_eviction_and_clear(clock: Clock) -> None:
    backend = MemoryBackend(max_entries=1, clock=clock)
    (first,) = await backend.incr_many(["g"])
    assert first > 2**51  # a random base, not 1
    await backend.set("a", b"1", 60)
    await backend.set("b", b"2", 60)
    backend.clear()
    assert await backend.incr_many(["g"]) == [first + 1]
    assert await backend.get_many(["g"]) == [str(first + 1).encode()]


async def test_delete(clock: Clock) -> None:
    backend = MemoryBackend(clock=clock)
    await backend.set("a", b"1", 60)
    assert await backend.delete(["a", "missing"]) == 1
    assert await backend.get_many(["a"]) == [None]
