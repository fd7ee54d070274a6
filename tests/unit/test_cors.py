"""The CORS response hook (handlers/cors.py) on its own: Vary merging and which headers go out."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sanic.response import HTTPResponse

from handlers.cors import Cors

A = "https://a.example"


async def run(cors: Cors, vary: str | None, origin: str | None = A,
              method: str = "GET") -> HTTPResponse:
    headers = {"origin": origin} if origin else {}
    if method == "OPTIONS":
        headers["access-control-request-method"] = "POST"
    response = HTTPResponse(headers={"vary": vary} if vary else None)
    request = SimpleNamespace(headers=headers, method=method)
    await cors.on_response(request, response)  # type: ignore[arg-type]
    return response


@pytest.mark.parametrize("vary, merged", [
    (None, "origin"), ("accept-encoding", "accept-encoding, origin"),
    ("Accept-Encoding, Origin", "Accept-Encoding, Origin"), ("*", "*"),
])
async def test_vary_keeps_what_was_there(vary: str | None, merged: str) -> None:
    response = await run(Cors([A]), vary)
    assert response.headers["vary"] == merged
    # Also without an Origin, and for origins that are not allowed: every response varies.
    assert (await run(Cors([A]), vary, origin=None)).headers["vary"] == merged
    assert (await run(Cors([A]), vary, origin="https://b.example")).headers["vary"] == merged


async def test_any_origin_adds_no_vary() -> None:
    response = await run(Cors(["*"]), "accept-encoding")
    assert response.headers["vary"] == "accept-encoding"
    assert response.headers["access-control-allow-origin"] == "*"


async def test_preflight_headers_only_on_preflights() -> None:
    simple = await run(Cors([A]), None)
    assert "access-control-allow-methods" not in simple.headers
    assert "x-request-id" in simple.headers["access-control-expose-headers"]
    preflight = await run(Cors([A]), None, method="OPTIONS")
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    assert "access-control-expose-headers" not in preflight.headers
