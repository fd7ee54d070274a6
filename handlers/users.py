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
from handlers.pagination import paginate
from handlers.responses import json_response
from handlers.schemas import FollowOut, UserOut, UserPage
from handlers.serialize import USER_FIELDS, user_out
from handlers.validation import existing_id
from models.stats import user_counts
from models.user import Follow, User

bp = Blueprint("users", url_prefix="/api/users")


async def _user_row(user_id: int) -> dict[str, Any]:
    rows = await User.filter(id=existing_id(user_id, "user")).values(*USER_FIELDS)
    if not rows:
        raise NotFound("user not found")
    return rows[0]


async def _with_counts(row: dict[str, Any]) -> dict[str, Any]:
    counts = await user_counts([row["id"]])
    return user_out(row, counts[row["id"]])


async def _followable(request: Request, user_id: int) -> dict[str, Any]:
    row = await _user_row(user_id)
    if row["id"] == request.ctx.user.id:
        raise BadRequest("user_id: users cannot follow themselves")
    return row


@bp.get("/list")
@openapi.definition(
    summary="Users, newest first, with counts", tag="users", parameter=docs.PAGE,
    response=[docs.ok(UserPage, "A page of users."), *docs.errors(400)],
)
async def list_users(request: Request) -> HTTPResponse:
    """Users newest first; followers, following and posts counted in three grouped queries."""
    rows, next_cursor = await paginate(request, User.all(), *USER_FIELDS)
    counts = await user_counts(row["id"] for row in rows)
    return json_response({"items": [user_out(row, counts[row["id"]]) for row in rows],
                          "next_cursor": next_cursor})


@bp.get("/<user_id:int>")
@openapi.definition(
    summary="One user with counts", tag="users", parameter=docs.path_id("user_id", "user"),
    response=[docs.ok(UserOut, "The user's public profile."), *docs.errors(404)],
)
async def get_user(request: Request, user_id: int) -> HTTPResponse:
    """A user's public profile (no email) with counts."""
    return json_response(await _with_counts(await _user_row(user_id)))


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
    row = await _followable(request, user_id)
    try:
        await Follow.create(follower_id=request.ctx.user.id, followee_id=row["id"])
        status = 201
    except IntegrityError:
        # The unique (follower, followee) pair already exists: following twice is a no-op.
        status = 200
    return json_response({"following": True, "user": await _with_counts(row)}, status=status)


@bp.delete("/<user_id:int>/follow")
@openapi.definition(
    summary="Unfollow a user (idempotent)", tag="users", secured=docs.SECURED,
    parameter=docs.path_id("user_id", "user"),
    response=[docs.ok(None, "Not following (any more).", 204), *docs.errors(400, 401, 404)],
)
@authenticated
async def unfollow(request: Request, user_id: int) -> HTTPResponse:
    """Stop following a user; 204 whether or not the follow existed."""
    row = await _followable(request, user_id)
    await Follow.filter(follower_id=request.ctx.user.id, followee_id=row["id"]).delete()
    return HTTPResponse(status=204)
