"""The bench's configurations: the compression pair's environment and workloads."""

from __future__ import annotations

import os

from bench.configs import BR, PLAIN, Config, all_configs, service_env
from bench.measure import entry_key
from middleware.settings import CacheSettings


def _pair() -> dict[str, Config]:
    return {c.name: c for c in all_configs((1, 2)) if c.name in {PLAIN, BR}}


def test_the_compression_pair_runs_once_with_one_worker_on_hits_and_misses() -> None:
    pair = _pair()
    assert set(pair) == {PLAIN, BR}
    assert [c.workers for c in all_configs((1, 2)) if c.name in {PLAIN, BR}] == [1, 1]
    assert all(c.workloads == ("hits", "misses") for c in pair.values())


def test_plain_turns_compression_off_and_br_keeps_the_default() -> None:
    plain, br = _pair()[PLAIN], _pair()[BR]
    envs = {name: service_env(c, port=1, database_url="postgres://x/y",
                              redis_url="redis://127.0.0.1:1/0")
            for name, c in ((PLAIN, plain), (BR, br))}
    off = CacheSettings.from_env(envs[PLAIN])
    assert off.compress_min_bytes > off.max_body_bytes
    assert "CACHE_COMPRESS_MIN_BYTES" not in envs[BR]
    assert CacheSettings.from_env(envs[BR]).compress_min_bytes == \
        CacheSettings().compress_min_bytes
    # Apart in Redis, hot tier on, and only br is asked as browsers ask.
    assert envs[PLAIN]["CACHE_NAMESPACE"] != envs[BR]["CACHE_NAMESPACE"]
    assert envs[PLAIN]["CACHE_LOCAL"] == envs[BR]["CACHE_LOCAL"] == "true"
    assert (plain.accept_encoding, br.accept_encoding) == ("", "gzip, br")


def test_existing_configurations_keep_the_service_defaults() -> None:
    for config in all_configs((1, 2)):
        if config.name in {PLAIN, BR} or config.kind != "service":
            continue
        env = service_env(config, port=1, database_url="postgres://x/y",
                          redis_url="redis://127.0.0.1:1/0", rest_url="http://127.0.0.1:2")
        for name in ("CACHE_NAMESPACE", "CACHE_COMPRESS_MIN_BYTES"):
            assert env.get(name) == os.environ.get(name)  # passed through, as before
        assert not config.accept_encoding


def test_entry_key_is_the_key_the_cache_stores_the_feed_page_under() -> None:
    assert entry_key("bench-br", "/api/posts") == "bench-br:r:GET:/api/posts?"
    assert entry_key("ns", "/api/posts?limit=5&author=a") == \
        "ns:r:GET:/api/posts?author=a&limit=5"
