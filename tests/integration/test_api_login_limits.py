"""Login and registration cannot be used to exhaust the service: bounded hashing, attempt
limits per client and per username, and the real client address behind a proxy."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import handlers.auth
from app import create_app
from settings import Settings
from tests.integration.api_support import PASSWORD, assert_error, register
from tests.server import running


def _login(username: str, password: str = PASSWORD) -> dict[str, str]:
    return {"username": username, "password": password}


async def test_per_username_limit_answers_429_with_retry_after(
        make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(login_rate_per_username="3/minute"))
    async with running(app) as client:
        await register(client, "ann")
        await register(client, "bob")
        statuses = [(await client.post("/api/auth/login", json=_login("ann", "wrong-pass"))).status
                    for _ in range(3)]
        assert statuses == [401, 401, 401]
        limited = await client.post("/api/auth/login", json=_login("ann"))  # even the right one
        assert_error(limited, 429, "username")
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        # The username is what is limited (case-insensitively), not everyone.
        assert (await client.post("/api/auth/login", json=_login("ANN"))).status == 429
        assert (await client.post("/api/auth/login", json=_login("bob"))).status == 200


async def test_per_client_limit_counts_logins_and_registrations(
        make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(login_rate_per_client="4/minute"))
    async with running(app) as client:
        await register(client, "ann")  # 1
        for _ in range(3):  # 2, 3, 4
            assert (await client.post("/api/auth/login", json=_login("ann"))).status == 200
        limited = await client.post("/api/auth/login", json=_login("ann"))
        assert_error(limited, 429, "address")
        assert int(limited.headers["retry-after"]) >= 1
        again = await client.post("/api/auth/register", json={
            "username": "cat", "email": "cat@example.com", "password": PASSWORD})
        assert again.status == 429
        # A spoofed X-Forwarded-For does not buy a new budget when no proxy is trusted.
        spoofed = await client.post("/api/auth/login", json=_login("ann"),
                                    headers={"x-forwarded-for": "203.0.113.9"})
        assert spoofed.status == 429


async def test_behind_a_trusted_proxy_each_client_has_its_own_budget(
        make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(login_rate_per_client="2/minute", proxies_count=1))
    async with running(app) as client:
        await register(client, "ann")  # from the proxy's own address: no forwarded header

        async def login_from(address: str) -> int:
            response = await client.post("/api/auth/login", json=_login("ann"),
                                         headers={"x-forwarded-for": address})
            return response.status

        assert [await login_from("198.51.100.1") for _ in range(3)] == [200, 200, 429]
        assert [await login_from("198.51.100.2") for _ in range(2)] == [200, 200]


async def test_hashes_run_at_most_n_at_once_and_the_rest_queue(
        make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    running_now = 0
    peak = 0
    real_verify = handlers.auth.verify_password

    async def slow_verify(password_hash: Any, password: str) -> bool:
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        try:
            await asyncio.sleep(0.05)
            return await real_verify(password_hash, password)
        finally:
            running_now -= 1

    monkeypatch.setattr(handlers.auth, "verify_password", slow_verify)
    app = create_app(make_settings(auth_max_concurrent_hashes=2, auth_max_waiting_hashes=50))
    async with running(app) as client:
        await register(client, "ann")
        responses = await asyncio.gather(*(
            client.post("/api/auth/login", json=_login("ann" if i % 2 else "nobody"))
            for i in range(10)))
    assert Counter(r.status for r in responses) == Counter({200: 5, 401: 5})
    assert peak == 2


async def test_past_the_queue_the_answer_is_429_before_any_hashing(
        make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    started = 0
    release = asyncio.Event()

    async def held_verify(password_hash: Any, password: str) -> bool:
        nonlocal started
        started += 1
        await release.wait()
        return False

    monkeypatch.setattr(handlers.auth, "verify_password", held_verify)
    app = create_app(make_settings(auth_max_concurrent_hashes=1, auth_max_waiting_hashes=2))
    async with running(app) as client:
        pending = [asyncio.create_task(client.post("/api/auth/login", json=_login(f"u{i}")))
                   for i in range(3)]  # one hashing, two queued
        while started < 1 or app.ctx.hash_gate._queued < 2:  # noqa: SLF001
            await asyncio.sleep(0.01)
        refused = await client.post("/api/auth/login", json=_login("u9"))
        assert_error(refused, 429, "in progress")
        assert refused.headers["retry-after"] == "1"
        assert started == 1  # the refused request never reached the hash
        release.set()
        assert [r.status for r in await asyncio.gather(*pending)] == [401, 401, 401]
    assert app.ctx.hash_gate.refused == 1
