"""Small builders for the OpenAPI description (sanic-ext) shared by the blueprints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sanic import Sanic
from sanic_ext.extensions.openapi.definitions import (
    Component,
    Parameter,
    RequestBody,
    Response,
)

from handlers.schemas import ErrorOut
from handlers.validation import DEFAULT_LIMIT, MAX_LIMIT

BEARER = "bearer"
SECURED: dict[str, Any] = {BEARER: []}

_ERRORS = {
    400: "Malformed JSON or an invalid field; the message names the field.",
    401: "Missing, invalid or expired bearer token.",
    403: "The signed-in user does not own this resource.",
    404: "No such resource.",
    409: "The username or email is already taken.",
    413: "The request body is larger than REQUEST_MAX_SIZE.",
    429: "Too many sign-in attempts, or too many in progress; see the Retry-After header.",
}


def describe_security(app: Sanic) -> None:
    """Declare the bearer-token scheme that secured operations refer to."""
    app.ext.openapi.add_security_scheme(BEARER, "http", scheme="bearer", bearer_format="JWT",
                                        description="A token from /api/auth/register or /login.")


def body(model: type[BaseModel], description: str) -> RequestBody:
    """A required JSON request body described by ``model``."""
    return RequestBody({"application/json": Component(model)}, required=True,
                       description=description)


def ok(model: type[BaseModel] | None, description: str, status: int = 200) -> Response:
    """A success response of an operation, with ``model`` as its JSON body (None: no body)."""
    content = {"application/json": Component(model)} if model is not None else None
    # String status keys: the spec is serialised with orjson, which refuses int dict keys.
    return Response(content, status=str(status),  # type: ignore[arg-type]
                    description=description)


def errors(*statuses: int) -> list[Response]:
    """The error responses an operation can give, all of them the shared error body."""
    return [Response({"application/json": Component(ErrorOut)},
                     status=str(status),  # type: ignore[arg-type]
                     description=_ERRORS[status]) for status in statuses]


def path_id(name: str, what: str) -> Parameter:
    """An integer id in the path."""
    return Parameter(name, int, "path", required=True, description=f"The {what}'s id.")


def query(name: str, schema: type, description: str) -> Parameter:
    """An optional query parameter."""
    return Parameter(name, schema, "query", required=False, description=description)


PAGE: list[dict[str, Any] | Parameter | str] = [
    query("limit", int, f"Page size, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})."),
    query("cursor", str, "The `next_cursor` of the previous page; omit for the first page."),
]
