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


def _query_schema(spec: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    for parameter in spec["paths"][path]["get"]["parameters"]:
        if parameter["in"] == "query" and parameter["name"] == name:
            schema: dict[str, Any] = parameter["schema"]
            return schema
    raise AssertionError(f"{path} documents no query parameter {name}")


async def test_query_bounds_are_documented_as_enforced(client: Client) -> None:
    """``limit`` was documented as any int32 and the text filters as any string, so requests
    the document allows (``limit=-5``, a 300-character ``q``) got a 400."""
    spec = await _spec(client)
    for path in ("/api/posts", "/api/jobs", "/api/users/list"):
        limit = _query_schema(spec, path, "limit")
        assert (limit["minimum"], limit["maximum"]) == (1, 100)
        for value in (limit["minimum"], limit["maximum"]):
            response = await client.get(path, params={"limit": value})
            assert_documented(spec, "GET", path, response)
            assert response.status == 200
        for value in (limit["minimum"] - 1, limit["maximum"] + 1):
            assert (await client.get(path, params={"limit": value})).status == 400
    text_filters = [("/api/posts", "author"), ("/api/posts", "cursor"), ("/api/jobs", "cursor"),
                    ("/api/users/list", "cursor"), ("/api/jobs", "location"), ("/api/jobs", "q"),
                    ("/api/jobs", "tag")]
    for path, name in text_filters:
        longest = _query_schema(spec, path, name)["maxLength"]
        if name != "cursor":  # a cursor of the longest length is still not a valid cursor
            response = await client.get(path, params={name: "x" * longest})
            assert_documented(spec, "GET", path, response)
            assert response.status == 200, (path, name)
        too_long = await client.get(path, params={name: "x" * (longest + 1)})
        assert too_long.status == 400, (path, name)
        assert f"{name}:" in too_long.json["error"]["message"]


async def test_405_names_the_allowed_methods(client: Client) -> None:
    """RFC 9110 requires ``Allow`` on a 405; routes with a path parameter answered without it."""
    cases = [("/api/posts", "GET, HEAD, POST"), ("/api/posts/1", "GET, HEAD, PATCH, DELETE"),
             ("/api/jobs/1", "GET, HEAD, PATCH, DELETE"), ("/api/users/1", "GET, HEAD"),
             ("/api/users/1/follow", "POST, DELETE")]
    for url, allowed in cases:
        for method in ("PUT", "TRACE"):
            response = await client.request(method, url)
            assert response.status == 405, (method, url)
            assert response.json["error"]["status"] == 405
            assert set(response.headers["allow"].split(", ")) == set(allowed.split(", ")), url
