"""Accounts and bearer tokens: register, log in, who am I; and the ``authenticated`` guard.

:func:`identify` is the cheap part (no database): the response cache calls it on every request
to key per-user responses.  :func:`authenticated` also loads the user.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from sanic import Blueprint, Request, Sanic
from sanic.exceptions import Forbidden, NotFound, Unauthorized
from tortoise.models import Model
from sanic.response import HTTPResponse
from sanic_ext import openapi
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from handlers import docs
from handlers.errors import Conflict
from handlers.responses import json_response
from handlers.schemas import USERNAME_MAX_LENGTH, AuthOut, LoginBody, MeOut, RegisterBody, TokenOut
from handlers.security import hash_password, issue_token, read_token, verify_password
from handlers.serialize import me_out
from handlers.throttle import AttemptLimits, HashGate, client_address
from handlers.validation import existing_id, parse_body
from models.profiles import own_profile
from models.stats import UserCounts
from models.user import User, credentials
from settings import Settings

log = logging.getLogger(__name__)

bp = Blueprint("auth", url_prefix="/api/auth")

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[HTTPResponse]])


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def identify(request: Request) -> str | None:
    """The user id (as str) of a valid, unexpired bearer token, else None.  No database query."""
    token = bearer_token(request)
    if token is None:
        return None
    user_id = read_token(token, request.app.ctx.settings.secret_key)
    return None if user_id is None else str(user_id)


def _invalid_token() -> Unauthorized:
    return Unauthorized("invalid or expired token", scheme="Bearer")


def token_user_id(request: Request) -> int:
    """The user id of the request's valid token; 401 without one (no database query)."""
    if bearer_token(request) is None:
        raise Unauthorized("missing bearer token", scheme="Bearer")
    user_id = identify(request)
    if user_id is None:
        raise _invalid_token()
    return int(user_id)


def authenticated(handler: Handler) -> Handler:
    """Require a valid token for an existing user; the user is put on ``request.ctx.user``."""

    @wraps(handler)
    async def guarded(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
        user = await User.get_or_none(id=token_user_id(request))
        if user is None:
            raise _invalid_token()
        request.ctx.user = user
        return await handler(request, *args, **kwargs)

    return guarded  # type: ignore[return-value]


def _token_for(request: Request, user_id: int) -> str:
    settings = request.app.ctx.settings
    return issue_token(user_id, settings.secret_key, settings.token_ttl_seconds)


async def _taken_field(username: str, email: str) -> str | None:
    rows = await User.filter(Q(username=username) | Q(email=email)).values_list(
        "username", "email")
    if any(row[0] == username for row in rows):
        return "username"
    if rows:
        return "email"
    return None


def install_login_guards(app: Sanic, settings: Settings) -> None:
    """Bound the argon2 work and the attempts of each worker (see ``handlers.throttle``)."""
    app.ctx.hash_gate = HashGate(settings.auth_max_concurrent_hashes,
                                 settings.auth_max_waiting_hashes)
    app.ctx.login_limits = AttemptLimits(settings.login_rate_per_client,
                                         settings.login_rate_per_username)


@bp.post("/register")
@openapi.definition(
    summary="Create an account", tag="auth",
    body=docs.body(RegisterBody, "The new account; the password is 8 to 128 characters."),
    response=[docs.ok(AuthOut, "The new user and a token.", 201),
              *docs.errors(400, 409, 413, 429)],
)
async def register(request: Request) -> HTTPResponse:
    """Create a user and return it with a bearer token."""
    ctx = request.app.ctx
    ctx.login_limits.client(client_address(request))
    body = parse_body(request, RegisterBody)
    taken = await _taken_field(body.username, body.email)
    if taken is None:
        async with ctx.hash_gate.slot():
            password_hash = await hash_password(body.password)
        try:
            user = await User.create(username=body.username, email=body.email,
                                     password_hash=password_hash)
        except IntegrityError:
            # Lost a race with a concurrent registration: report which field clashed.
            taken = await _taken_field(body.username, body.email) or "username"
    if taken is not None:
        raise Conflict(f"{taken}: is already taken")
    log.info("Registered user %s", user.id)
    counts = UserCounts(followers_count=0, following_count=0, posts_count=0)
    return json_response({"user": me_out(user, counts), "token": _token_for(request, user.id)},
                         status=201)


@bp.post("/login")
@openapi.definition(
    summary="Get a token", tag="auth",
    body=docs.body(LoginBody, "Username and password."),
    response=[docs.ok(TokenOut, "A bearer token."), *docs.errors(400, 401, 413, 429)],
)
async def login(request: Request) -> HTTPResponse:
    """Exchange a username and password for a bearer token."""
    ctx = request.app.ctx
    ctx.login_limits.client(client_address(request))
    body = parse_body(request, LoginBody)
    ctx.login_limits.username(body.username)
    found = None
    # A longer name names nobody: no need to ask.
    if len(body.username) <= USERNAME_MAX_LENGTH:
        found = await credentials(body.username)
    user_id, password_hash = (None, None) if found is None else found
    async with ctx.hash_gate.slot():
        verified = await verify_password(password_hash, body.password)
    if not verified or user_id is None:
        raise Unauthorized("invalid username or password", scheme="Bearer")
    return json_response({"token": _token_for(request, user_id)})


@bp.get("/me")
@openapi.definition(
    summary="The signed-in user", tag="auth", secured=docs.SECURED,
    response=[docs.ok(MeOut, "The caller's own profile with counts."), *docs.errors(401)],
)
async def me(request: Request) -> HTTPResponse:
    """The caller's own user, with email and counts: one statement loads both (the same
    401s as :func:`authenticated`)."""
    profile = await own_profile(token_user_id(request))
    if profile is None:
        raise _invalid_token()
    return json_response(profile)


ModelT = TypeVar("ModelT", bound=Model)


async def load_owned(request: Request, model: type[ModelT], item_id: int, *, resource: str,
                     owner_field: str, owner_role: str) -> ModelT:
    """The row ``item_id`` of ``model`` if the signed-in user owns it: else 404, or 403."""
    item = await model.get_or_none(id=existing_id(item_id, resource))
    if item is None:
        raise NotFound(f"{resource} not found")
    if getattr(item, owner_field) != request.ctx.user.id:
        raise Forbidden(f"only the {owner_role} may change this {resource}")
    return item
