"""The service's own settings: required SECRET_KEY, BACKLOG, limits, and warnings about
variables that are set but do nothing."""

from __future__ import annotations

import pytest

from middleware.settings import ENV_NAMES as CACHE_ENV_NAMES
from middleware.settings import CacheSettings
from settings import SERVICE_ENV_NAMES, Settings, SettingsError, settings_warnings

PG = "postgres://u:p@db.example.com:5432/app"


def test_the_embedded_default_runs_with_no_settings_at_all() -> None:
    settings = Settings.from_env({})
    assert settings.is_sqlite and settings.secret_key_generated
    assert len(settings.secret_key) >= 32


@pytest.mark.parametrize("url", [PG, "postgresql://u@h/db?sslmode=require"])
def test_a_real_database_without_secret_key_refuses_to_start(url: str) -> None:
    with pytest.raises(SettingsError, match="SECRET_KEY must be set"):
        Settings.from_env({"DATABASE_URL": url})


def test_a_real_database_with_secret_key_starts() -> None:
    settings = Settings.from_env({"DATABASE_URL": PG, "SECRET_KEY": "k" * 32})
    assert settings.secret_key == "k" * 32 and not settings.secret_key_generated


def test_backlog_defaults_above_a_thousand_connections_and_is_configurable() -> None:
    assert Settings.from_env({}).backlog >= 1024
    assert Settings.from_env({"BACKLOG": "4096"}).backlog == 4096
    with pytest.raises(SettingsError, match="BACKLOG"):
        Settings.from_env({"BACKLOG": "0"})


def test_proxies_metrics_token_and_login_limits() -> None:
    settings = Settings.from_env({
        "PROXIES_COUNT": "1", "FORWARDED_SECRET": "fs", "METRICS_TOKEN": "mt",
        "AUTH_MAX_CONCURRENT_HASHES": "2", "AUTH_MAX_WAITING_HASHES": "0",
        "LOGIN_RATE_PER_CLIENT": "5 per 10 seconds", "LOGIN_RATE_PER_USERNAME": "3/minute"})
    assert (settings.proxies_count, settings.forwarded_secret, settings.metrics_token) == (
        1, "fs", "mt")
    assert (settings.auth_max_concurrent_hashes, settings.auth_max_waiting_hashes) == (2, 0)
    assert settings.login_rate_per_client == "5 per 10 seconds"
    assert Settings.from_env({}).proxies_count is None
    assert "mt" not in repr(settings) and "fs" not in repr(settings)


def test_migrations_at_start_up_are_off_unless_asked_for() -> None:
    assert Settings.from_env({}).database_auto_migrate is False
    assert Settings.from_env({"DATABASE_AUTO_MIGRATE": "true"}).database_auto_migrate is True


@pytest.mark.parametrize("env", [
    {"LOGIN_RATE_PER_CLIENT": "lots"}, {"LOGIN_RATE_PER_USERNAME": "10/fortnight"},
    {"AUTH_MAX_CONCURRENT_HASHES": "0"}, {"PROXIES_COUNT": "-1"},
    {"DATABASE_AUTO_MIGRATE": "sometimes"},
])
def test_bad_values_raise_naming_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)


def test_removed_pool_settings_are_named_with_what_replaced_them() -> None:
    lines = settings_warnings({"REDIS_POOL_SIZE": "10", "REDIS_POOL_TIMEOUT": "5.0"})
    assert len(lines) == 2
    assert all("has no effect" in line and "one pipelined Redis connection per worker" in line
               for line in lines)
    assert lines[0].startswith("REDIS_POOL_SIZE") and lines[1].startswith("REDIS_POOL_TIMEOUT")


@pytest.mark.parametrize(("name", "closest"), [
    ("CACHE_MEMORY_MAX_ENTRY", "CACHE_MEMORY_MAX_ENTRIES"),
    ("REDIS_URLS", "REDIS_URL"),
    ("CACHE_BREAKER_FAILURE", "CACHE_BREAKER_FAILURES"),
    ("REDIS_SOCKET_TIMEOUTS", "REDIS_SOCKET_TIMEOUT"),
    ("CACHE_ENABLE", "CACHE_ENABLED"),
])
def test_a_typo_names_the_closest_real_setting(name: str, closest: str) -> None:
    (line,) = settings_warnings({name: "1"})
    assert line.startswith(name) and line.endswith(f"did you mean {closest}?")


def test_real_settings_and_other_prefixes_give_no_warning() -> None:
    env = {name: "1" for name in SERVICE_ENV_NAMES | CACHE_ENV_NAMES}
    env.update(PATH="/bin", UPSTASH_REDIS_REST_URL="https://x", TEST_PG_HOST="h")
    assert settings_warnings(env) == []


def test_the_name_lists_follow_what_from_env_reads() -> None:
    """A variable read but not listed would be warned about as a typo; listed but not read
    would never be warned about."""
    import inspect
    import re

    def read(function: object) -> set[str]:  # the names passed to env.get / _int / _bool...
        return set(re.findall(r'(?:env\.get\(|env, )"([A-Z][A-Z0-9_]+)"',
                              inspect.getsource(function)))

    assert read(CacheSettings.from_env) == set(CACHE_ENV_NAMES)
    from settings import _log_level

    assert read(Settings.from_env) | read(_log_level) == set(SERVICE_ENV_NAMES)


@pytest.mark.parametrize("raw, origins", [
    ("", ()), ("  ", ()), ("*", ("*",)),
    ("https://app.example.com", ("https://app.example.com",)),
    (" https://a.example , http://localhost:5173,https://a.example",
     ("https://a.example", "http://localhost:5173")),
    ("http://[::1]:8080", ("http://[::1]:8080",)),
])
def test_cors_origins(raw: str, origins: tuple[str, ...]) -> None:
    assert Settings.from_env({"CORS_ORIGINS": raw}).cors_origins == origins


@pytest.mark.parametrize("raw", [
    "https://a.example/", "https://a.example/app", "HTTPS://A.example", "a.example",
    "*, https://a.example", "ftp://a.example", "https://a.example:123456", "null",
])
def test_cors_origins_that_would_never_match_fail_at_start_up(raw: str) -> None:
    with pytest.raises(SettingsError, match="CORS_ORIGINS"):
        Settings.from_env({"CORS_ORIGINS": raw})
