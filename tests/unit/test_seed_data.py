"""The seed generators: reproducible, valid rows."""

from __future__ import annotations

import random

from models.seed_data import COLUMNS, Generator


def test_rows_match_the_columns_and_are_reproducible() -> None:
    first, second = Generator(random.Random(5)), Generator(random.Random(5))
    second.now = first.now
    users = first.users(10, 1, "hash")
    assert users == second.users(10, 1, "hash")
    assert all(len(row) == len(COLUMNS["users"]) for row in users)
    assert [row[1] for row in users[:2]] == ["user1", "user2"]
    times = [row[4] for row in users]
    assert times == sorted(times) and all(at <= first.now for at in times)
    jobs, tags = first.jobs(20, 1, 1, [1, 2, 3])
    assert all(len(row) == len(COLUMNS["jobs"]) for row in jobs)
    assert all(len(row) == len(COLUMNS["job_tags"]) for row in tags)
    assert len({(job_id, tag) for _, job_id, tag in tags}) == len(tags)
    assert all(low <= high for *_, low, high, _, _ in jobs if low is not None and high)


def test_follows_are_distinct_pairs_even_when_dense() -> None:
    gen = Generator(random.Random(1))
    for count in (3, 6, 50):  # 3 users allow 6 pairs: the sparse, the dense and the capped path
        rows = gen.follows(count, 1, [1, 2, 3])
        pairs = [(follower, followee) for _, follower, followee, _ in rows]
        assert len(pairs) == min(count, 6) == len(set(pairs))
        assert all(follower != followee for follower, followee in pairs)
