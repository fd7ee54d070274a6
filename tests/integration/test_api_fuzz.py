"""Malformed input at every route: whatever comes in, no 5xx goes out.

Bodies of every JSON shape and wrong field types, path ids out of every integer range, odd
query strings and authorization headers; each answer must be a 2xx or a JSON 4xx error.
"""

from __future__ import annotations

import random
from typing import Any

from tests.integration.api_support import register
from tests.server import Client

ROUTES: list[tuple[str, str]] = [
    ("POST", "/api/auth/register"), ("POST", "/api/auth/login"), ("GET", "/api/auth/me"),
    ("GET", "/api/posts"), ("POST", "/api/posts"), ("GET", "/api/posts/{id}"),
    ("PATCH", "/api/posts/{id}"), ("DELETE", "/api/posts/{id}"),
    ("GET", "/api/jobs"), ("GET", "/api/jobs/stats"), ("POST", "/api/jobs"),
    ("GET", "/api/jobs/{id}"), ("PATCH", "/api/jobs/{id}"), ("DELETE", "/api/jobs/{id}"),
    ("GET", "/api/users/list"), ("GET", "/api/users/{id}"),
    ("POST", "/api/users/{id}/follow"), ("DELETE", "/api/users/{id}/follow"),
]
FIELDS = ["username", "email", "password", "content", "title", "company", "location",
          "remote", "salary_min", "salary_max", "tags", "description"]
ODD_VALUES: list[Any] = [
    None, True, 0, -1, 2**31, 2**63, 10**40, 1.5, -0.0, "", " ", "x" * 5000, "\x00",
    "a\x00b", "é✨🙂", "\u202e", "' OR 1=1 --", "%", [], ["x"] * 50, [None], [1, "a"], {},
    {"$gt": ""},
]
RAW_BODIES: list[bytes] = [
    b"", b"null", b"[]", b"[{}]", b'"str"', b"42", b"true", b"{", b"{]", b"\xff\xfe",
    b"\x00", b'{"a":' * 2000 + b"1" + b"}" * 2000, b"[" * 5000, b'{"content": "\\ud800"}',
    b'{"content": 1e999}', b'{"content": NaN}', b'{"salary_min": 1' + b"0" * 400 + b"}",
    "{\"content\": \"caf\u00e9\"}".encode("latin-1"),
]
IDS = ["0", "-1", "1", "2147483647", "2147483648", "9223372036854775808", "9" * 60]
QUERIES: list[dict[str, str]] = [
    {"limit": "abc"}, {"limit": "0"}, {"limit": "101"}, {"limit": "1e3"}, {"limit": "9" * 50},
    {"cursor": "%%%"}, {"cursor": "AAAA"}, {"cursor": "x" * 10_000}, {"author": "\x00"},
    {"location": "\x00"}, {"remote": "2"}, {"q": "%_\\"}, {"tag": "🙂" * 30},
    {"q": "x" * 5000}, {"author": "é"}, {"limit": "5", "cursor": ""},
]
AUTH_HEADERS: list[dict[str, Any]] = [
    {}, {"Authorization": "Bearer"}, {"Authorization": "Bearer a.b.c"},
    {"Authorization": "bearer " + "A" * 5000}, {"Authorization": b"Bearer \xff\xfe"},
    {"Authorization": "Token abc"},
]


def _assert_sane(response: Any, what: str) -> None:
    assert response.status < 500, f"{what} -> {response.status} {response.text[:300]}"
    if response.status >= 400:
        assert response.json["error"]["status"] == response.status, what
        assert "Traceback" not in response.text


async def test_no_input_produces_a_server_error(client: Client) -> None:
    rng = random.Random(20_251_125)
    _, auth = await register(client, "fuzzer")
    post = (await client.post("/api/posts", json={"content": "target"}, headers=auth)).json
    owned_id = str(post["id"])

    for method, template in ROUTES:
        for path_id in (rng.sample(IDS, 4) + ["1"] if "{id}" in template else ["-"]):
            url = template.replace("{id}", owned_id if path_id == "1" else path_id)
            for headers in (auth, rng.choice(AUTH_HEADERS)):
                if method == "GET":
                    for params in rng.sample(QUERIES, 3):
                        response = await client.get(url, params=params, headers=headers)
                        _assert_sane(response, f"GET {url} {params}")
                    continue
                for raw in rng.sample(RAW_BODIES, 3):
                    response = await client.request(method, url, content=raw, headers={
                        **headers, "content-type": "application/json"})
                    _assert_sane(response, f"{method} {url} {raw[:40]!r}")
                body = {name: rng.choice(ODD_VALUES) for name in rng.sample(FIELDS, 4)}
                response = await client.request(method, url, json=body, headers=headers)
                _assert_sane(response, f"{method} {url} {body!r:.200}")


async def test_every_field_with_odd_values(client: Client) -> None:
    """Each field of each body, set to odd values while the rest of the body stays valid."""
    _, auth = await register(client, "fuzzer")
    job_body = {"title": "t", "company": "c", "location": "l"}
    job = (await client.post("/api/jobs", json=job_body, headers=auth)).json
    targets: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/posts", {"content": "c"}),
        ("POST", "/api/jobs", job_body),
        ("PATCH", f"/api/jobs/{job['id']}", {}),
        ("POST", "/api/auth/register", {"username": "someone", "email": "s@example.com",
                                        "password": "password123"}),
    ]
    rng = random.Random(7)
    for method, url, valid in targets:
        for field in FIELDS:
            for value in rng.sample(ODD_VALUES, 8):
                response = await client.request(method, url, json={**valid, field: value},
                                                headers=auth)
                _assert_sane(response, f"{method} {url} {field}={value!r:.60}")


async def test_unknown_routes_and_methods_are_json(client: Client) -> None:
    for method, url in [("GET", "/api/nope"), ("PUT", "/api/posts"), ("POST", "/api/jobs/stats"),
                        ("GET", "/api/users"), ("GET", "/api/posts/1/extra"),
                        ("GET", "/api/%00"), ("PATCH", "/api/users/1")]:
        response = await client.request(method, url)
        assert 400 <= response.status < 500, (method, url, response.status)
        _assert_sane(response, f"{method} {url}")
