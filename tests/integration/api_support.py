"""Helpers shared by the API tests: accounts and error assertions."""

from __future__ import annotations

from typing import Any

from sanic_testing.testing import TestingResponse

from tests.server import Client

PASSWORD = "password123"


async def register(client: Client, username: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Create ``username`` through the API; returns its user body and bearer headers."""
    response = await client.post("/api/auth/register", json={
        "username": username, "email": f"{username}@example.com", "password": PASSWORD})
    assert response.status == 201, response.text
    return response.json["user"], client.bearer(response.json["token"])


def assert_error(response: TestingResponse, status: int, *fragments: str) -> None:
    """The response is the service's JSON error body with ``status``, mentioning ``fragments``."""
    assert response.status == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json["error"]
    assert error["status"] == status
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
