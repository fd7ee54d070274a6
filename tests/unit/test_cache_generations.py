"""Generation counters (``middleware.generations``): their keys, their read, their bump."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from middleware.backends.base import CacheBackendError
from middleware.generations import Generations
from middleware.keys import EPOCH_TAG, generation_key
from middleware.observer import NullObserver
from middleware.settings import CacheSettings
from middleware.tiers import Tiers


class Shared:
    """The commands ``Generations`` sends to a shared tier, over a dict."""

    name = "stub"
    shared = True

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.fail = False

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.data.get(key) for key in keys]

    async def init_many(self, keys: Sequence[str]) -> list[int]:
        for key in keys:
            self.data.setdefault(key, b"1000")
        return [int(self.data[key]) for key in keys]

    async def incr_many(self, keys: Sequence[str]) -> list[int]:
        if self.fail:
            raise CacheBackendError("down")
        for key in keys:
            self.data[key] = b"%d" % (int(self.data.get(key, b"0")) + 1)
        return [int(self.data[key]) for key in keys]


def _generations(backend: Any = None) -> tuple[Generations, Tiers]:
    settings = CacheSettings()
    tiers = Tiers(settings, backend, observer=NullObserver(), report=lambda command, start: None)
    return Generations(tiers, settings.namespace, report=lambda command, start: None), tiers


def test_keys_end_with_the_epoch_and_are_memoised() -> None:
    generations, _ = _generations()
    ns = CacheSettings().namespace
    keys = generations.keys(("a", "b"))
    assert keys == (generation_key(ns, "a"), generation_key(ns, "b"),
                    generation_key(ns, EPOCH_TAG))
    assert generations.keys(["a", "b"]) is keys


async def test_a_missing_counter_is_created_and_no_entry_can_be_current() -> None:
    backend: Any = Shared()
    generations, _ = _generations(backend)
    backend.data["k"] = b"entry"
    found, raw = await generations.read(backend, "k", ("a",), None)
    assert raw is None and found.generations == (1000, 1000)
    found, raw = await generations.read(backend, "k", ("a",), None)
    assert raw == b"entry" and found.generations == (1000, 1000)


async def test_an_overwritten_counter_fails_the_read_for_good() -> None:
    backend: Any = Shared()
    generations, _ = _generations(backend)
    await generations.read(backend, "k", ("a",), None)
    backend.data[generation_key(CacheSettings().namespace, "a")] = b"not a number"
    with pytest.raises(CacheBackendError) as raised:
        await generations.read(backend, "k", ("a",), None)
    assert not raised.value.transient


async def test_a_bump_reaches_redis_or_is_kept_for_replay() -> None:
    backend: Any = Shared()
    generations, tiers = _generations(backend)
    before = tiers.coherence.generations(("a",))
    await generations.bump(("a",))
    assert backend.data[generation_key(CacheSettings().namespace, "a")] == b"1"
    assert tiers.coherence.generations(("a",)) != before and tiers.coherence.outstanding == 0
    backend.fail = True
    with pytest.raises(CacheBackendError):
        await generations.bump(("a",))
    assert tiers.coherence.outstanding == 1
