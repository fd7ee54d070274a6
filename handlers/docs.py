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
from sanic_ext.extensions.openapi.types import Integer, String

from handlers.examples import EXAMPLES, error_example
from handlers.pagination import MAX_CURSOR_LENGTH
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


def _json(model: type[BaseModel], example: Any) -> dict[str, Any]:
    """``application/json`` with ``model``'s schema and an example body (``handlers.examples``).

    A plain dict with a ``schema`` key: sanic-ext makes it a ``MediaType`` (one given as such
    would be documented as a schema of its own)."""
    return {"application/json": {"schema": Component(model), "example": example}}


def body(model: type[BaseModel], description: str) -> RequestBody:
    """A required JSON request body described by ``model``, with its example."""
    return RequestBody(_json(model, EXAMPLES[model]), required=True, description=description)


def ok(model: type[BaseModel] | None, description: str, status: int = 200) -> Response:
    """A success response of an operation, with ``model`` as its JSON body (None: no body)."""
    # An empty content map documents "no body"; None would make sanic-ext document any media
    # type (``*/*``) with an empty schema, which clients then try to parse.
    content = _json(model, EXAMPLES[model]) if model is not None else {}
    # String status keys: the spec is serialised with orjson, which refuses int dict keys.
    return Response(content, status=str(status),  # type: ignore[arg-type]
                    description=description)


def errors(*statuses: int) -> list[Response]:
    """The error responses an operation can give, all of them the shared error body."""
    return [Response(_json(ErrorOut, error_example(status)),
                     status=str(status),  # type: ignore[arg-type]
                     description=_ERRORS[status]) for status in statuses]


def path_id(name: str, what: str) -> Parameter:
    """An integer id in the path."""
    return Parameter(name, int, "path", required=True, description=f"The {what}'s id.")


def query(name: str, schema: type, description: str) -> Parameter:
    """An optional query parameter."""
    return Parameter(name, schema, "query", required=False, description=description)


def text_query(name: str, max_length: int, description: str) -> Parameter:
    """An optional text query parameter of at most ``max_length`` characters (longer is a 400,
    see :func:`handlers.validation.query_text`)."""
    return Parameter(name, String(maxLength=max_length), "query", required=False,
                     description=description)


PAGE: list[dict[str, Any] | Parameter | str] = [
    Parameter("limit", Integer(minimum=1, maximum=MAX_LIMIT), "query", required=False,
              description=f"Page size, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})."),
    text_query("cursor", MAX_CURSOR_LENGTH,
               "The `next_cursor` of the previous page; omit for the first page."),
]
