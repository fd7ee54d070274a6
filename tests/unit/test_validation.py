"""Request schemas: what passes, and the field-naming 400 messages for what does not."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from sanic.exceptions import BadRequest, NotFound

from handlers.schemas import JobBody, JobPatch, PostBody, RegisterBody
from handlers.validation import existing_id, parse_body, query_bool, query_limit


def _request(body: Any = None, raw: bytes | None = None, **args: str) -> Any:
    payload = raw if raw is not None else orjson.dumps(body)
    return SimpleNamespace(body=payload, args={key: value for key, value in args.items()})


def _error(model: type, body: Any) -> str:
    with pytest.raises(BadRequest) as caught:
        parse_body(_request(body), model)
    return str(caught.value)


def test_valid_bodies_are_normalised() -> None:
    user = parse_body(_request({"username": "Ann_1", "email": "Ann@Example.COM",
                                "password": "password123"}), RegisterBody)
    assert (user.username, user.email) == ("Ann_1", "ann@example.com")
    job = parse_body(_request({"title": "Dev", "company": "Acme", "location": "Berlin",
                               "tags": ["Go", "go ", "SQL"]}), JobBody)
    assert job.tags == ["go", "sql"] and job.remote is False and job.salary_min is None


@pytest.mark.parametrize(("model", "body", "message"), [
    (PostBody, {}, "content: is required"),
    (PostBody, {"content": "x" * 2001}, "content: must be at most 2000 characters"),
    (PostBody, {"content": " "}, "content: must not be blank"),
    (PostBody, {"content": 1}, "content: should be a valid string"),
    (PostBody, {"content": "a", "x": 1}, "x: is not an accepted field"),
    (RegisterBody, {"username": "a b", "email": "a@b.co", "password": "password123"},
     "username: must be 3 to 32 letters, digits, '_', '.' or '-'"),
    (JobBody, {"title": "t", "company": "c", "location": "l", "salary_min": 3,
               "salary_max": 2}, "salary_min: must not exceed salary_max"),
    (JobBody, {"title": "t", "company": "c", "location": "l", "remote": 1},
     "remote: should be a valid boolean"),
    (JobBody, {"title": "t", "company": "c", "location": "l", "tags": ["a", 2]},
     "tags.1: should be a valid string"),
    (JobPatch, {"company": None}, "company: must not be null"),
])
def test_errors_name_the_field(model: type, body: dict[str, Any], message: str) -> None:
    assert _error(model, body) == message


def test_several_errors_are_joined() -> None:
    message = _error(RegisterBody, {"username": "ab"})
    assert message.startswith("username: must be 3 to 32")
    assert "email: is required" in message and "password: is required" in message


@pytest.mark.parametrize(("raw", "message"), [
    (b"", "body: must be valid JSON"), (b"{", "body: must be valid JSON"),
    (b"[]", "body: must be a JSON object"), (b"null", "body: must be a JSON object"),
])
def test_malformed_json(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_body(_request(raw=raw), PostBody)


@pytest.mark.parametrize(("value", "expected"), [
    (None, 20), ("1", 1), ("100", 100), (" 7 ", 7), ("", 20),
    ("0", None), ("101", None), ("-1", None), ("abc", None), ("²", None), ("5.0", None),
])
def test_limit(value: str | None, expected: int | None) -> None:
    request = _request() if value is None else _request(limit=value)
    if expected is None:
        with pytest.raises(BadRequest, match="limit: must be an integer from 1 to 100"):
            query_limit(request)
    else:
        assert query_limit(request) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("true", True), ("FALSE", False), ("1", True), ("no", False), ("", None)])
def test_query_bool(value: str, expected: bool | None) -> None:
    assert query_bool(_request(remote=value), "remote") is expected
    with pytest.raises(BadRequest, match="remote: must be true or false"):
        query_bool(_request(remote="maybe"), "remote")


@pytest.mark.parametrize("value", [0, -1, 2**31, 10**30])
def test_ids_outside_int32_are_not_found(value: int) -> None:
    with pytest.raises(NotFound):
        existing_id(value, "post")
    assert existing_id(2**31 - 1, "post") == 2**31 - 1
