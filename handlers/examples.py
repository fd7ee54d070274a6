"""Example bodies for the OpenAPI description: one per schema of :mod:`handlers.schemas`.

:func:`handlers.docs.body` and :func:`handlers.docs.ok` attach the example of their model to
the operation's media type (OpenAPI 3.0 ``example``), so Swagger UI shows real values and its
"Try it out" starts from a request the API accepts. The tests check every example against its
schema and send the request examples to the service.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from handlers import schemas
from handlers.pagination import Cursor

_CREATED = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
_AT = "2026-12-02T09:30:00Z"
_NEXT = Cursor(_CREATED, 41).encode()

ANN = {"id": 7, "username": "ann"}
USER = {"id": 7, "username": "ann", "created_at": _AT, "followers_count": 12,
        "following_count": 3, "posts_count": 42}
ME = {**USER, "email": "ann@example.com"}
POST = {"id": 42, "content": "Hello from the API docs!", "created_at": _AT, "updated_at": _AT,
        "author": ANN}
JOB_BODY = {"title": "Backend engineer", "company": "Acme", "location": "Berlin",
            "remote": True, "salary_min": 60_000, "salary_max": 85_000,
            "tags": ["python", "sanic"], "description": "Build and run our APIs."}
JOB = {"id": 5, **JOB_BODY, "created_at": _AT, "owner": ANN}
# A real token's shape, not a valid token: three base64url parts.
TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI3In0.c2lnbmF0dXJl"

EXAMPLES: dict[type[BaseModel], Any] = {
    schemas.RegisterBody: {"username": "ann", "email": "ann@example.com",
                           "password": "correct-horse-9"},
    schemas.LoginBody: {"username": "ann", "password": "correct-horse-9"},
    schemas.PostBody: {"content": POST["content"]},
    schemas.JobBody: JOB_BODY,
    schemas.JobPatch: {"remote": False, "salary_max": 90_000},
    schemas.AuthOut: {"user": ME, "token": TOKEN},
    schemas.TokenOut: {"token": TOKEN},
    schemas.MeOut: ME,
    schemas.UserOut: USER,
    schemas.UserPage: {"items": [USER], "next_cursor": _NEXT},
    schemas.FollowOut: {"following": True, "user": {**USER, "id": 8, "username": "bob"}},
    schemas.PostOut: POST,
    schemas.PostPage: {"items": [POST], "next_cursor": _NEXT},
    schemas.JobOut: JOB,
    schemas.JobPage: {"items": [JOB], "next_cursor": None},
    schemas.JobStatsOut: {
        "total": 2000, "remote": 640,
        "locations": [{"location": "Berlin", "count": 210}, {"location": "Paris", "count": 180}],
        "tags": [{"tag": "python", "count": 530}, {"tag": "sanic", "count": 75}],
        "salary": {"min": 30_000, "max": 190_000, "avg_min": 58_250.5, "avg_max": 81_120.0,
                   "jobs_with_salary": 1500},
    },
}
"""The example body of each documented model."""

ERROR_MESSAGES = {
    400: "content: must be at most 2000 characters",
    401: "missing bearer token",
    403: "only the author may change this post",
    404: "post not found",
    409: "username: is already taken",
    413: "Request body exceeds the size limit",
    429: "too many sign-in attempts; retry later",
}
"""A typical message of each error status (the body is always ``{"error": {...}}``)."""


def error_example(status: int) -> dict[str, Any]:
    """The error body an operation answers with ``status``."""
    return {"error": {"status": status, "message": ERROR_MESSAGES[status]}}
