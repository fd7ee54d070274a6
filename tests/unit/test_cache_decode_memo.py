"""In-process hits reuse the decoded record of the bytes the memory tier returns."""

from __future__ import annotations

from typing import Any

import pytest

from middleware import CacheSettings, MemoryBackend, ResponseCache
from middleware import cache as cache_module


async def _store(cache: ResponseCache, key: str, body: bytes) -> None:
    found = await cache.lookup("/r", key, ("t",))
    record = cache.make_record(found, status=200, content_type="application/json",
                               headers=(), body=body)
    await cache.store(found, record, 60, "/r")
    cache.release(found, record)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = cache_module.decode

    def counting(raw: bytes) -> Any:
        calls.append(len(raw))
        return real(raw)

    monkeypatch.setattr(cache_module, "decode", counting)
    return calls


async def test_repeated_memory_hits_decode_once(decodes: list[int]) -> None:
    cache = ResponseCache(CacheSettings(), MemoryBackend())
    await _store(cache, "k", b'{"a": 1}')
    first = await cache.lookup("/r", "k", ("t",))
    second = await cache.lookup("/r", "k", ("t",))
    assert first.record is second.record and first.record is not None
    assert len(decodes) == 1


async def test_a_new_value_or_a_write_is_never_answered_from_the_memo(
        decodes: list[int]) -> None:
    cache = ResponseCache(CacheSettings(), MemoryBackend())
    await _store(cache, "k", b"old")
    assert (await cache.lookup("/r", "k", ("t",))).record.body == b"old"  # type: ignore[union-attr]
    await _store(cache, "k", b"new")  # new bytes under the same key
    assert (await cache.lookup("/r", "k", ("t",))).record.body == b"new"  # type: ignore[union-attr]
    await cache.invalidate(["t"])
    assert (await cache.lookup("/r", "k", ("t",), lead=False)).record is None


async def test_the_memo_stays_within_its_byte_bound(decodes: list[int]) -> None:
    settings = CacheSettings(memory_max_bytes=16 * 1024 * 1024)
    cache = ResponseCache(settings, MemoryBackend(max_bytes=settings.memory_max_bytes))
    for n in range(40):
        await _store(cache, f"k{n}", bytes(64 * 1024))
        await cache.lookup("/r", f"k{n}", ("t",))
        assert cache._decoded.size <= settings.memory_max_bytes // 16
    assert 0 < len(cache._decoded) < 40
