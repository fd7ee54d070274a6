"""The cluster backend's key layout: every key of a namespace in the namespace's hash slot."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from middleware.backends.cluster import physical_key
from middleware.keys import EPOCH_TAG, bound_key, generation_key, response_key


@pytest.mark.parametrize("key, expected", [
    ("rc:r:GET:/api/posts?", "{rc}:r:GET:/api/posts?"),
    ("rc:gen:posts:feed", "{rc}:gen:posts:feed"),
    ("rc:incarnation", "{rc}:incarnation"),
    ("other", "{rc}other"),
])
def test_the_namespace_becomes_the_hash_tag(key: str, expected: str) -> None:
    assert physical_key("rc", key) == expected


def test_an_entry_and_its_generations_share_one_slot() -> None:
    """One MGET reads them together; a write's script touches one slot."""
    keys = [response_key("rc", "/api/posts", "limit=5"), response_key("rc", "/x" * 200),
            bound_key("rc:v:" + "k" * 300, "rc"), generation_key("rc", "posts:feed"),
            generation_key("rc", EPOCH_TAG)]
    assert {key_slot(physical_key("rc", key).encode()) for key in keys} == {
        key_slot(b"{rc}")}
    assert key_slot(b"{rc}") != key_slot(physical_key("rc2", keys[0]).encode())
