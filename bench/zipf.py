"""Zipf-distributed request sequences: a few hot URLs, a long tail of cold ones."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def zipf_weights(n: int, s: float = 1.0) -> list[float]:
    """Normalised weights of ranks 1..n: rank ``k`` is drawn with probability ∝ 1 / k**s."""
    if n < 1:
        raise ValueError("n must be at least 1")
    if s < 0:
        raise ValueError("s must be >= 0")
    raw = [1.0 / (k ** s) for k in range(1, n + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def zipf_indices(n: int, count: int, *, s: float = 1.0, seed: int = 1) -> list[int]:
    """``count`` ranks (0-based) drawn from Zipf(s) over ``n`` items; reproducible by ``seed``."""
    rng = random.Random(seed)
    cumulative = list(itertools.accumulate(zipf_weights(n, s)))
    cumulative[-1] = 1.0  # guard against rounding leaving the last bucket unreachable
    return [bisect.bisect_left(cumulative, rng.random()) for _ in range(count)]


def zipf_sequence(items: Sequence[T], count: int, *, s: float = 1.0, seed: int = 1) -> list[T]:
    """``count`` picks from ``items`` where ``items[0]`` is the most popular."""
    return [items[i] for i in zipf_indices(len(items), count, s=s, seed=seed)]


def place_hot(universe: Sequence[T], hot: Sequence[T], *, top: int, seed: int = 1) -> list[T]:
    """``universe`` shuffled, with the ``hot`` items spread over the first ``top`` ranks.

    Used to make sure the written posts are read often enough for the stale check to matter.
    """
    rng = random.Random(seed)
    hot_set = set(hot)
    rest = [u for u in universe if u not in hot_set]
    rng.shuffle(rest)
    order = list(rest)
    top = max(len(hot), min(top, len(order) + len(hot)))
    positions = sorted(rng.sample(range(top), len(hot)))
    for position, item in zip(positions, hot):
        order.insert(position, item)
    return order
