"""``X-Request-ID``: echoed when sane, generated otherwise, on every response (cache hits, 304s
and errors included), and named in the log lines written while the request is handled."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from app import create_app
from observability.logging import RedactingFormatter, configure_logging
from settings import Settings
from tests.server import Client, running

GENERATED = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
async def client(make_settings: Callable[..., Settings]) -> AsyncIterator[Client]:
    async with running(create_app(make_settings())) as http:
        yield http


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The service's console handler, writing to a buffer for the test."""
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    root.handlers[:] = [h for h in root.handlers
                        if not isinstance(h.formatter, RedactingFormatter)]
    stream = io.StringIO()
    configure_logging("INFO", stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


async def test_a_sane_request_id_is_echoed_on_misses_hits_and_304s(client: Client) -> None:
    first = await client.get("/api/posts", headers={"X-Request-ID": "req-1.a:B_9"})
    assert first.headers["x-cache"] == "MISS"
    assert first.headers["x-request-id"] == "req-1.a:B_9"
    hit = await client.get("/api/posts", headers={"X-Request-ID": "req-2"})
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["x-request-id"] == "req-2"  # the caller's, never the stored one
    etag = hit.headers["etag"]
    not_modified = await client.get("/api/posts", headers={"X-Request-ID": "req-3",
                                                           "If-None-Match": etag})
    assert not_modified.status == 304
    assert not_modified.headers["x-request-id"] == "req-3"
    anonymous_hit = await client.get("/api/posts")
    assert anonymous_hit.headers["x-cache"] == "HIT"
    assert GENERATED.match(anonymous_hit.headers["x-request-id"])


async def test_a_missing_id_is_generated_per_request(client: Client) -> None:
    ids = {(await client.get("/health")).headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3
    assert all(GENERATED.match(value) for value in ids)


@pytest.mark.parametrize("sent", [
    "", "a" * 129, "two words", "<script>", "id;drop", "ünïcode", "a,b",
])
async def test_an_unsafe_id_is_replaced(client: Client, sent: str) -> None:
    response = await client.get("/health", headers={"X-Request-ID": sent.encode()})
    assert GENERATED.match(response.headers["x-request-id"]), sent


async def test_the_longest_accepted_id_is_echoed(client: Client) -> None:
    sent = "a" * 128
    response = await client.get("/health", headers={"X-Request-ID": sent})
    assert response.headers["x-request-id"] == sent


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/no/such/route", 404), ("GET", "/api/posts/999999", 404),
    ("GET", "/api/posts?limit=0", 400), ("POST", "/api/posts", 401),
    ("PUT", "/api/posts", 405),
])
async def test_errors_carry_the_id(client: Client, method: str, path: str, status: int) -> None:
    response = await client.request(method, path, headers={"X-Request-ID": "err-1"})
    assert response.status == status
    assert response.headers["x-request-id"] == "err-1"


async def test_log_lines_about_the_request_name_it(client: Client,
                                                   log_stream: io.StringIO) -> None:
    response = await client.post("/api/auth/register", headers={"X-Request-ID": "reg-42"},
                                 json={"username": "ann", "email": "ann@example.com",
                                       "password": "password123"})
    assert response.status == 201
    lines = [line for line in log_stream.getvalue().splitlines() if "Registered user" in line]
    assert len(lines) == 1
    assert "request_id=reg-42" in lines[0]
    await client.get("/health")
    # Lines outside a request carry no id.
    logging.getLogger("test").info("between requests")
    assert [line for line in log_stream.getvalue().splitlines()
            if "between requests" in line][0].endswith("test: between requests")
