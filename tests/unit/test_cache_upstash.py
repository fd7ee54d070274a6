"""The Upstash REST backend's pure parts: its settings, which backend the tiers pick, and the
value and reply encodings (the HTTP side is in tests/integration/test_cache_upstash.py)."""

from __future__ import annotations

import base64

import pytest

from middleware.backends.redis import RedisBackend
from middleware.backends.rest import RestProtocolError, decode_result
from middleware.backends.upstash import UpstashBackend, decode_value
from middleware.observer import NullObserver
from middleware.settings import CacheSettings, CacheSettingsError
from middleware.tiers import Tiers

REST = {"UPSTASH_REDIS_REST_URL": "https://eu1-x.upstash.io",
        "UPSTASH_REDIS_REST_TOKEN": "AX-secret-token"}


def test_rest_variables_are_read() -> None:
    settings = CacheSettings.from_env({**REST, "CACHE_REST_MAX_REPLY_BYTES": "5000000"})
    assert (settings.rest_url, settings.rest_token) == (REST["UPSTASH_REDIS_REST_URL"],
                                                        REST["UPSTASH_REDIS_REST_TOKEN"])
    assert settings.rest_max_reply_bytes == 5_000_000
    assert settings.redis_url is None
    assert "AX-secret-token" not in repr(settings)


@pytest.mark.parametrize("env", [
    {"UPSTASH_REDIS_REST_URL": "https://x.upstash.io"},  # no token
    {"UPSTASH_REDIS_REST_TOKEN": "t"},  # no URL
    {**REST, "UPSTASH_REDIS_REST_URL": "redis://x:6379"},
    {**REST, "CACHE_REST_MAX_REPLY_BYTES": "4095"},
    # A largest entry must fit a reply: base64, bytes above 0x7f doubled.
    {**REST, "CACHE_MAX_BODY_BYTES": "2000000", "CACHE_REST_MAX_REPLY_BYTES": "5000000"},
])
def test_bad_rest_settings_fail_at_start_up(env: dict[str, str]) -> None:
    with pytest.raises(CacheSettingsError):
        CacheSettings.from_env(env)


async def _opened(env: dict[str, str]) -> Tiers:
    tiers = Tiers(CacheSettings.from_env(env), None, observer=NullObserver(),
                  report=lambda command, start: None)
    await tiers.open()
    return tiers


@pytest.mark.parametrize(("env", "chosen", "name"), [
    (REST, UpstashBackend, "upstash"),
    ({**REST, "REDIS_URL": "redis://127.0.0.1:1"}, RedisBackend, "redis"),
    ({**REST, "REDIS_PRIVATE_URL": "redis://127.0.0.1:1"}, RedisBackend, "redis"),
])
async def test_rest_only_without_a_redis_url(env: dict[str, str], chosen: type,
                                             name: str) -> None:
    tiers = await _opened(env)
    try:
        assert isinstance(tiers.remote, chosen)
        assert tiers.configured_backend == tiers.backend_name == name
    finally:
        await tiers.close()


async def test_the_rest_url_is_shown_and_the_token_never() -> None:
    tiers = await _opened(REST)
    try:
        assert tiers.redis_url_redacted == "https://eu1-x.upstash.io"
    finally:
        await tiers.close()


def test_decode_result_follows_the_base64_encoding() -> None:
    b64 = base64.b64encode
    assert decode_result(b64(b"\x00\xff").decode()) == b"\x00\xff"
    assert decode_result([b64(b"a").decode(), None, 3, [b64(b"b").decode()]]) == [
        b"a", None, 3, [b"b"]]
    assert decode_result("OK") == b"OK"  # Upstash leaves the OK status unencoded
    assert decode_result(b64(b"OK").decode()) == b"OK"  # SRH encodes it
    with pytest.raises(RestProtocolError):
        decode_result("not base64!")


@pytest.mark.parametrize("value", [b"", b"plain ascii 123", bytes(range(256)), "é".encode()])
def test_values_written_as_latin1_code_points_read_back(value: bytes) -> None:
    stored = value.decode("latin-1").encode("utf-8")  # what the server keeps of the JSON string
    assert decode_value(stored) == value


def test_a_value_written_over_tcp_reads_as_it_is() -> None:
    record = b"RC\x01\x00\xc8\xff\xfe binary"  # not UTF-8: written by a TCP instance
    assert decode_value(record) == record
