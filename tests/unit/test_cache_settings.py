"""CacheSettings: read once from the environment, bad values fail at start-up."""

from __future__ import annotations

import dataclasses
import ssl

import pytest

from middleware.backends.redis import ssl_context_for
from middleware.settings import CacheSettings, CacheSettingsError, redact_url


def test_defaults_select_memory() -> None:
    settings = CacheSettings.from_env({})
    assert settings.redis_url is None
    assert settings.socket_timeout == 2.0 and settings.connect_timeout == 2.0
    assert settings.honor_client_no_cache is False


def test_every_variable_is_read() -> None:
    env = {
        "REDIS_URL": "redis://:pw@h:6380/1",
        "REDIS_CONNECT_TIMEOUT": "1", "REDIS_SOCKET_TIMEOUT": "1.5", "REDIS_TLS_INSECURE": "true",
        "CACHE_NAMESPACE": "app1", "CACHE_MEMORY_MAX_ENTRIES": "50",
        "CACHE_MEMORY_MAX_BYTES": "4096", "CACHE_MAX_BODY_BYTES": "100",
        "CACHE_BREAKER_FAILURES": "2", "CACHE_BREAKER_RESET_SECONDS": "0.5",
        "CACHE_HONOR_CLIENT_NO_CACHE": "yes", "CACHE_STAMPEDE_TIMEOUT": "3",
        "CACHE_MAX_PENDING_TAGS": "8", "CACHE_STATUS_NAME": "edge-1",
    }
    s = CacheSettings.from_env(env)
    assert (s.redis_url, s.connect_timeout, s.socket_timeout) == ("redis://:pw@h:6380/1", 1.0, 1.5)
    assert (s.tls_insecure, s.namespace) == (True, "app1")
    assert (s.memory_max_entries, s.memory_max_bytes, s.max_body_bytes) == (50, 4096, 100)
    assert (s.breaker_failures, s.breaker_reset_seconds) == (2, 0.5)
    assert (s.honor_client_no_cache, s.stampede_timeout, s.max_pending_tags) == (True, 3.0, 8)
    assert s.status_name == "edge-1"


def test_cluster_is_off_unless_asked_for() -> None:
    assert CacheSettings.from_env({"REDIS_URL": "redis://h:1"}).redis_cluster is False
    settings = CacheSettings.from_env({"REDIS_URL": "rediss://h:1", "REDIS_CLUSTER": "true"})
    assert settings.redis_cluster is True


def test_private_url_is_the_fallback() -> None:
    assert CacheSettings.from_env({"REDIS_PRIVATE_URL": "redis://p:1"}).redis_url == "redis://p:1"
    assert CacheSettings.from_env({"REDIS_URL": "redis://a:1",
                                   "REDIS_PRIVATE_URL": "redis://p:1"}).redis_url == "redis://a:1"


@pytest.mark.parametrize("env", [
    {"REDIS_URL": "http://x"},
    {"REDIS_SOCKET_TIMEOUT": "0"},
    {"REDIS_SOCKET_TIMEOUT": "ten"},
    {"REDIS_CONNECT_TIMEOUT": "-1"},
    {"REDIS_SOCKET_TIMEOUT": "nan"},
    {"CACHE_HONOR_CLIENT_NO_CACHE": "maybe"},
    {"CACHE_NAMESPACE": "a:b"},
    {"CACHE_BREAKER_FAILURES": "0"},
    {"REDIS_TLS_CA_CERTS": "/no/such/file.pem"},
    {"CACHE_STATUS_NAME": "caché"},
    {"REDIS_CLUSTER": "true", "REDIS_URL": "unix:///tmp/redis.sock"},
    {"REDIS_CLUSTER": "sometimes", "REDIS_URL": "redis://h:1"},
])
def test_bad_values_raise(env: dict[str, str]) -> None:
    with pytest.raises(CacheSettingsError):
        CacheSettings.from_env(env)


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CacheSettings().socket_timeout = 3  # type: ignore[misc]


@pytest.mark.parametrize(("url", "expected"), [
    (None, None),
    ("redis://h:6379", "redis://h:6379"),
    ("redis://:secret@h:6379/0", "redis://:***@h:6379/0"),
    ("rediss://default:secret@host.upstash.io:6380", "rediss://default:***@host.upstash.io:6380"),
])
def test_redact(url: str | None, expected: str | None) -> None:
    assert redact_url(url) == expected
    assert CacheSettings(redis_url=url).redis_url_redacted == expected


def test_tls_verifies_by_default() -> None:
    context = ssl_context_for(CacheSettings())
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    insecure = ssl_context_for(CacheSettings(tls_insecure=True))
    assert insecure.verify_mode == ssl.CERT_NONE and not insecure.check_hostname
