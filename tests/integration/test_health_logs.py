"""Start-up logs name the database and the cache backend; secrets never reach logs or bodies.

Every record is captured at DEBUG (the most talkative setting) while a user registers, logs in,
fails to log in, uses a token and writes, with a Redis URL that carries a password, both with
Redis answering and with it down (whose errors are logged with tracebacks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_redis.executor import RedisExecutor

from settings import Settings
from tests.integration.test_health import (
    REDIS_PASSWORD, cache_env, health_redis, redis_url, service, sqlite_settings,
)
from tests.integration.test_checker import tls_files, tls_redis
from tests.server import free_port

# Fixtures shared with test_health and test_checker.
__all__ = ["cache_env", "health_redis", "sqlite_settings", "tls_files", "tls_redis"]

USER_PASSWORD = "correct-horse-battery-9"


def records_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured line, fully formatted (arguments and tracebacks included)."""
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


async def test_startup_names_database_and_redis(
        sqlite_settings: Callable[..., Settings], cache_env: Callable[[str | None], None],
        health_redis: RedisExecutor, caplog: pytest.LogCaptureFixture) -> None:
    url = redis_url(health_redis)
    cache_env(url)
    caplog.set_level(logging.INFO)
    async with service(sqlite_settings, redis_url=url):
        pass
    text = records_text(caplog)
    assert "INFO models.db: Database connected: " in text
    expected = f"Redis cache connected (no TLS): redis://:***@{health_redis.host}:" \
               f"{health_redis.port}/0"
    assert expected in text
    assert REDIS_PASSWORD not in text


async def test_startup_says_redis_is_connected_with_tls(
        sqlite_settings: Callable[..., Settings], cache_env: Callable[[str | None], None],
        tls_files: Path, tls_redis: int, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    url = f"rediss://localhost:{tls_redis}/0"
    cache_env(url)
    monkeypatch.setenv("REDIS_TLS_CA_CERTS", str(tls_files / "ca.crt"))
    caplog.set_level(logging.INFO)
    async with service(sqlite_settings, redis_url=url) as client:
        body = (await client.get("/health/cache")).json
    assert f"Redis cache connected (TLS): {url}" in records_text(caplog)
    assert (body["status"], body["backend"]) == ("healthy", "redis")


async def test_startup_says_when_redis_is_unavailable(
        sqlite_settings: Callable[..., Settings], cache_env: Callable[[str | None], None],
        caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"
    cache_env(url)
    caplog.set_level(logging.INFO)
    async with service(sqlite_settings, redis_url=url) as client:
        assert (await client.get("/health")).status == 200
    text = records_text(caplog)
    assert "Redis unavailable, using in-memory cache" in text
    assert REDIS_PASSWORD not in text


@pytest.mark.parametrize("redis_up", [True, False], ids=["redis-up", "redis-down"])
async def test_no_password_or_token_in_logs_or_responses(
        sqlite_settings: Callable[..., Settings], cache_env: Callable[[str | None], None],
        health_redis: RedisExecutor, caplog: pytest.LogCaptureFixture, redis_up: bool) -> None:
    url = redis_url(health_redis) if redis_up else \
        f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"
    cache_env(url)
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []
    async with service(sqlite_settings, redis_url=url, log_level="DEBUG") as client:
        registered = await client.post("/api/auth/register", json={
            "username": "secretive", "email": "secretive@example.com",
            "password": USER_PASSWORD})
        assert registered.status == 201
        login = await client.post("/api/auth/login", json={
            "username": "secretive", "password": USER_PASSWORD})
        assert login.status == 200
        token = login.json["token"]
        wrong = await client.post("/api/auth/login", json={
            "username": "secretive", "password": USER_PASSWORD + "x"})
        assert wrong.status == 401
        auth = client.bearer(token)
        responses = [
            wrong,
            await client.get("/api/auth/me", headers=auth),
            await client.post("/api/posts", headers=auth, json={"content": "hello"}),
            await client.get("/api/posts", headers=auth),
            await client.get("/api/posts"),
            await client.get("/api/posts"),
            await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}x"}),
            await client.get("/health/detailed"),
            await client.get("/health/cache"),
            await client.get("/metrics"),
        ]
        bodies = [response.text for response in responses]
    logs = records_text(caplog)
    if not redis_up:  # the fail-open warnings and their tracebacks were checked too
        assert "Traceback" in logs and "continuing uncached" in logs
    for secret in (USER_PASSWORD, token, REDIS_PASSWORD):
        assert secret not in logs
        assert all(secret not in body for body in bodies)
    # The token's signature alone must not leak either (e.g. a log of the header's tail).
    assert token.rsplit(".", 1)[1] not in logs
    # Responses that carry the token by design carry no password.
    assert USER_PASSWORD not in registered.text + login.text
