"""Zipf key generation for the mixed workload."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.zipf import place_hot, zipf_indices, zipf_sequence, zipf_weights


def test_weights_are_normalised_and_decreasing() -> None:
    weights = zipf_weights(1000, 1.0)
    assert sum(weights) == pytest.approx(1.0)
    assert all(a > b for a, b in zip(weights, weights[1:]))
    # Rank 1 is twice as likely as rank 2, three times rank 3 (s = 1).
    assert weights[0] / weights[1] == pytest.approx(2.0)
    assert weights[0] / weights[2] == pytest.approx(3.0)


def test_s_zero_is_uniform() -> None:
    weights = zipf_weights(4, 0.0)
    assert weights == pytest.approx([0.25] * 4)


@pytest.mark.parametrize("n, s", [(0, 1.0), (10, -0.5)])
def test_bad_parameters_are_rejected(n: int, s: float) -> None:
    with pytest.raises(ValueError):
        zipf_weights(n, s)


def test_draws_are_reproducible_and_follow_the_ranks() -> None:
    draws = zipf_indices(100, 50_000, s=1.0, seed=3)
    assert draws == zipf_indices(100, 50_000, s=1.0, seed=3)
    assert draws != zipf_indices(100, 50_000, s=1.0, seed=4)
    assert min(draws) >= 0 and max(draws) <= 99
    counts = Counter(draws)
    expected_top = zipf_weights(100, 1.0)[0] * 50_000
    assert counts[0] == pytest.approx(expected_top, rel=0.05)
    assert counts[0] > counts[1] > counts[4] > counts[50]


def test_sequence_maps_ranks_to_items() -> None:
    items = ["hot", "warm", "cold"]
    sequence = zipf_sequence(items, 3000, s=2.0, seed=1)
    counts = Counter(sequence)
    assert set(counts) <= set(items)
    assert counts["hot"] > counts["warm"] > counts["cold"]


def test_place_hot_spreads_hot_items_over_the_top_ranks_and_keeps_everything() -> None:
    universe = [f"/u/{i}" for i in range(500)]
    hot = ["/u/7", "/u/450", "/u/499"]
    order = place_hot(universe, hot, top=20, seed=2)
    assert sorted(order) == sorted(universe)
    assert all(order.index(h) < 20 for h in hot)
    assert order == place_hot(universe, hot, top=20, seed=2)
