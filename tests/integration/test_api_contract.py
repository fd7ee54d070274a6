"""Responses match what /docs/openapi.json says about them: regressions found by schemathesis
(tests/integration/test_api_schema.py), each pinned down over HTTP."""

from __future__ import annotations

from typing import Any

import jsonschema

from tests.integration.api_support import register
from tests.server import Client


async def _spec(client: Client) -> dict[str, Any]:
    response = await client.get("/docs/openapi.json")
    assert response.status == 200
    spec: dict[str, Any] = response.json
    return spec


def assert_documented(spec: dict[str, Any], method: str, path: str, response: Any) -> None:
    """``response`` has a status documented for the operation, and a body that matches it."""
    documented = spec["paths"][path][method.lower()]["responses"]
    assert str(response.status) in documented, (method, path, response.status)
    content = documented[str(response.status)].get("content") or {}
    if not content:
        assert response.content == b"", (method, path, response.content[:200])
        return
    assert list(content) == ["application/json"], (method, path, content)
    assert response.headers["content-type"].startswith("application/json")
    schema = {**content["application/json"]["schema"], "components": spec["components"]}
    jsonschema.validate(response.json, schema)


async def test_deletes_document_an_empty_204(client: Client) -> None:
    """The 204s were documented as ``*/*`` with a schema, so clients expected a body to parse."""
    spec = await _spec(client)
    _, auth = await register(client, "dora")
    other, _ = await register(client, "eric")
    post = (await client.post("/api/posts", json={"content": "x"}, headers=auth)).json
    job = (await client.post("/api/jobs", json={"title": "t", "company": "c", "location": "l"},
                             headers=auth)).json
    await client.post(f"/api/users/{other['id']}/follow", headers=auth)
    for path, url in (("/api/posts/{post_id}", f"/api/posts/{post['id']}"),
                      ("/api/jobs/{job_id}", f"/api/jobs/{job['id']}"),
                      ("/api/users/{user_id}/follow", f"/api/users/{other['id']}/follow")):
        response = await client.delete(url, headers=auth)
        assert response.status == 204
        assert spec["paths"][path]["delete"]["responses"]["204"].get("content") in (None, {})
        assert_documented(spec, "DELETE", path, response)
