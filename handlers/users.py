"""Users with their counts, and the follow graph (idempotent follow/unfollow)."""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request
from sanic.exceptions import BadRequest, NotFound
from sanic.response import HTTPResponse
from sanic_ext import openapi
from tortoise.exceptions import IntegrityError

from handlers import docs
from handlers.auth import authenticated
from handlers.pagination import query_cursor, split_page
from handlers.responses import json_response
from handlers.schemas import FollowOut, UserOut, UserPage
from handlers.validation import existing_id, query_limit
from models.profiles import user_exists, user_profile, users_page
from models.user import Follow

bp = Blueprint("users", url_prefix="/api/users")


async def _profile(user_id: int) -> dict[str, Any]:
    profile = await user_profile(existing_id(user_id, "user"))
    if profile is None:
        raise NotFound("user not found")
    return profile


async def _followable(request: Request, user_id: int) -> int:
    if not await user_exists(existing_id(user_id, "user")):
        raise NotFound("user not found")
    if user_id == request.ctx.user.id:
        raise BadRequest("user_id: users cannot follow themselves")
    return user_id


@bp.get("/list")
@openapi.definition(
    summary="Users, newest first, with counts", tag="users", parameter=docs.PAGE,
    response=[docs.ok(UserPage, "A page of users."), *docs.errors(400)],
)
async def list_users(request: Request) -> HTTPResponse:
    """Users newest first with their counts, in one statement; keyset-paginated."""
    limit = query_limit(request)
    cursor = query_cursor(request)
    rows = await users_page(limit + 1, after=None if cursor is None else cursor.key())
    items, next_cursor = split_page(rows, limit)
    return json_response({"items": items, "next_cursor": next_cursor})


@bp.get("/<user_id:int>")
@openapi.definition(
    summary="One user with counts", tag="users", parameter=docs.path_id("user_id", "user"),
    response=[docs.ok(UserOut, "The user's public profile."), *docs.errors(404)],
)
async def get_user(request: Request, user_id: int) -> HTTPResponse:
    """A user's public profile (no email) with counts."""
    return json_response(await _profile(user_id))


@bp.post("/<user_id:int>/follow")
@openapi.definition(
    summary="Follow a user (idempotent)", tag="users", secured=docs.SECURED,
    parameter=docs.path_id("user_id", "user"),
    response=[docs.ok(FollowOut, "Now following.", 201),
              docs.ok(FollowOut, "Already following: nothing changed."),
              *docs.errors(400, 401, 404)],
)
@authenticated
async def follow(request: Request, user_id: int) -> HTTPResponse:
    """Follow a user: 201 when the follow is new, 200 when it already existed."""
    followee = await _followable(request, user_id)
    try:
        await Follow.create(follower_id=request.ctx.user.id, followee_id=followee)
        status = 201
    except IntegrityError:
        # The unique (follower, followee) pair already exists: following twice is a no-op.
        status = 200
    # Read after the write, so followers_count includes this follow.
    return json_response({"following": True, "user": await _profile(followee)}, status=status)


@bp.delete("/<user_id:int>/follow")
@openapi.definition(
    summary="Unfollow a user (idempotent)", tag="users", secured=docs.SECURED,
    parameter=docs.path_id("user_id", "user"),
    response=[docs.ok(None, "Not following (any more).", 204), *docs.errors(400, 401, 404)],
)
@authenticated
async def unfollow(request: Request, user_id: int) -> HTTPResponse:
    """Stop following a user; 204 whether or not the follow existed."""
    followee = await _followable(request, user_id)
    await Follow.filter(follower_id=request.ctx.user.id, followee_id=followee).delete()
    return HTTPResponse(status=204)
