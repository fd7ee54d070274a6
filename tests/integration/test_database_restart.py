"""PostgreSQL going away for a moment (a restart, a failover) is waited out, not a 500.

The soak found 23 answers 500 in the half second of a ``pg_ctl restart``. A TCP proxy in front
of the session's PostgreSQL plays the restart: it drops every connection and refuses new ones,
then comes back on the same port.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from app import create_app
from models.db_retry import _read_only, _retryable
from settings import Settings
from tests.integration.api_support import register
from tests.integration.test_health import TcpProxy
from tests.server import running

pytestmark = pytest.mark.postgres


async def _service_through_proxy(postgres_url: str, retry: float) -> tuple[TcpProxy, str]:
    from tests.conftest import PG_HOST, PG_PORT, _truncate_postgres

    await _truncate_postgres(postgres_url)
    proxy = TcpProxy(PG_HOST, PG_PORT)
    await proxy.start()
    return proxy, postgres_url.replace(f"@{PG_HOST}:{PG_PORT}/", f"@127.0.0.1:{proxy.port}/")


@pytest.mark.parametrize("retry", [3.0, 0.0])
async def test_requests_during_a_database_restart_wait_for_it(postgres_url: str,
                                                              retry: float) -> None:
    proxy, url = await _service_through_proxy(postgres_url, retry)
    settings = Settings(database_url=url, secret_key="test-secret-key-0123456789abcdef",
                        database_retry_seconds=retry, cache_enabled=False)
    async with running(create_app(settings)) as client:
        _, auth = await register(client, "ann")
        post_id = (await client.post("/api/posts", json={"content": "v0"},
                                     headers=auth)).json["id"]
        await proxy.stop()  # the restart begins: connections dropped, new ones refused
        started = time.monotonic()
        pending = [asyncio.create_task(client.get(f"/api/posts/{post_id}")),
                   asyncio.create_task(client.get("/api/posts?limit=5")),
                   asyncio.create_task(client.patch(f"/api/posts/{post_id}",
                                                    json={"content": "v1"}, headers=auth))]
        await asyncio.sleep(0.5)
        await proxy.start()  # back on the same port
        responses = await asyncio.gather(*pending)
        statuses = [r.status for r in responses]
        if retry:
            assert statuses == [200, 200, 200], [r.text for r in responses]
            assert time.monotonic() - started >= 0.5  # they waited for the database
            assert (await client.get(f"/api/posts/{post_id}")).json["content"] == "v1"
        else:
            # Turned off: no waiting, but an unreachable database is a 503, never a 500.
            assert 503 in statuses and 500 not in statuses, statuses
    await proxy.stop()


async def test_a_database_down_longer_than_the_retry_time_answers_503_with_retry_after(
        postgres_url: str) -> None:
    proxy, url = await _service_through_proxy(postgres_url, 0.3)
    settings = Settings(database_url=url, secret_key="test-secret-key-0123456789abcdef",
                        database_retry_seconds=0.3, cache_enabled=False)
    async with running(create_app(settings)) as client:
        _, auth = await register(client, "ann")
        await proxy.stop()
        try:
            reads = [await client.get(path) for path in
                     ("/api/posts?limit=5", "/api/users/list", "/api/jobs/stats")]
            write = await client.post("/api/posts", json={"content": "x"}, headers=auth)
        finally:
            await proxy.start()
        for response in (*reads, write):
            assert response.status == 503, (response.status, response.text)
            assert response.headers["retry-after"] == "5"
            assert response.json == {"error": {"status": 503,
                                               "message": "database unavailable; retry shortly"}}
        assert (await client.get("/api/posts?limit=5")).status == 200  # back
    await proxy.stop()


def test_only_what_cannot_have_run_is_retried_for_writes() -> None:
    import asyncpg

    lost = asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
    assert _retryable(ConnectionRefusedError(), ("UPDATE posts SET x = 1",))
    assert _retryable(asyncpg.exceptions.CannotConnectNowError("starting"), ("INSERT ...",))
    assert _retryable(lost, ("SELECT 1",))
    assert not _retryable(lost, ("UPDATE posts SET content = $1",))
    assert not _retryable(lost, ("INSERT INTO posts VALUES ($1)",))
    assert not _retryable(ValueError("a bug"), ("SELECT 1",))
    assert _read_only(("  select * from posts",)) and not _read_only(
        ("WITH x AS (DELETE FROM posts RETURNING id) SELECT * FROM x",))
