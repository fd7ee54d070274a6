"""Turn untrusted request input into typed values, or a 400 that names the field.

Request bodies are parsed with orjson (it rejects lone surrogates and infinities, which would
otherwise fail later in the database driver or the serialiser) and validated by pydantic models
in strict mode, so ``"1"`` is not an integer and ``1`` is not a string.  Query parameters and
path ids have small parsers of their own.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

import orjson
from pydantic import AfterValidator, BaseModel, ValidationError
from pydantic_core import ErrorDetails
from sanic import Request
from sanic.exceptions import BadRequest, NotFound

M = TypeVar("M", bound=BaseModel)

# PostgreSQL ``integer`` columns: a larger id in a path cannot exist, and sending it to the
# database would fail with an overflow error instead of "not found".
INT32_MAX = 2**31 - 1
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def check_text(value: str) -> str:
    """Reject text that no database column can store (PostgreSQL refuses NUL characters)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def check_not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Text = Annotated[str, AfterValidator(check_text)]
"""A string that can be stored in every supported database."""


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not an accepted field"
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if kind == "string_too_short":
        return f"must be at least {ctx.get('min_length')} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    return str(error["msg"]).removeprefix("Input ").lower()


def describe_errors(exc: ValidationError) -> str:
    """``"content: is required; tags.2: must be at most 40 characters"``."""
    parts = []
    for error in exc.errors(include_url=False):
        if error["loc"]:
            field = ".".join(str(part) for part in error["loc"])
            parts.append(f"{field}: {_message(error)}")
        else:
            # A model-level check: its message names the field(s) itself.
            parts.append(_message(error))
    return "; ".join(parts)


def parse_body(request: Request, model: type[M]) -> M:
    """The request body as ``model``; 400 for malformed JSON, a non-object or a bad field."""
    try:
        data = orjson.loads(request.body or b"")
    except orjson.JSONDecodeError:
        raise BadRequest("body: must be valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("body: must be a JSON object")
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise BadRequest(describe_errors(exc)) from None


def query_text(request: Request, name: str, *, max_length: int = 200) -> str | None:
    """An optional text query parameter, stripped; empty means absent."""
    raw: str | None = request.args.get(name)
    if raw is None:
        return None
    value = raw.strip()
    if not value:
        return None
    if "\x00" in value:
        raise BadRequest(f"{name}: must not contain NUL characters")
    if len(value) > max_length:
        raise BadRequest(f"{name}: must be at most {max_length} characters")
    return value


def query_bool(request: Request, name: str) -> bool | None:
    """``true``/``false`` (also 1/0, yes/no); anything else is a 400."""
    raw = query_text(request, name, max_length=10)
    if raw is None:
        return None
    lowered = raw.lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise BadRequest(f"{name}: must be true or false")


def query_limit(request: Request) -> int:
    """The page size: ``limit`` from 1 to 100, default 20."""
    raw = query_text(request, "limit", max_length=10)
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit: must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def existing_id(value: int, resource: str) -> int:
    """A path id that could name a row; anything out of range is simply not found."""
    if not 1 <= value <= INT32_MAX:
        raise NotFound(f"{resource} not found")
    return value
