"""The feed: list (keyset-paginated), read, write, edit and delete posts."""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request
from sanic.exceptions import NotFound
from sanic.response import HTTPResponse
from sanic_ext import openapi

from handlers import docs
from handlers.auth import authenticated, load_owned
from handlers.pagination import query_cursor, split_page
from handlers.responses import json_response
from handlers.schemas import USERNAME_MAX_LENGTH, PostBody, PostOut, PostPage
from handlers.serialize import POST_FIELDS, post_out
from handlers.validation import existing_id, parse_body, query_limit, query_text
from models.feed import feed_rows
from models.post import Post
from models.user import User

bp = Blueprint("posts", url_prefix="/api/posts")


def _row(post: Post, author: User) -> dict[str, Any]:
    return {"id": post.id, "content": post.content, "created_at": post.created_at,
            "updated_at": post.updated_at, "author_id": author.id,
            "author__username": author.username}


async def _own_post(request: Request, post_id: int) -> Post:
    return await load_owned(request, Post, post_id, resource="post", owner_field="author_id",
                            owner_role="author")


@bp.get("")
@openapi.definition(
    summary="The feed, newest first", tag="posts",
    parameter=[*docs.PAGE,
               docs.text_query("author", USERNAME_MAX_LENGTH, "Only posts by this username.")],
    response=[docs.ok(PostPage, "A page of posts."), *docs.errors(400)],
)
async def list_posts(request: Request) -> HTTPResponse:
    """Posts newest first, optionally by one author; keyset-paginated (one fixed statement)."""
    author = query_text(request, "author", max_length=USERNAME_MAX_LENGTH)
    limit = query_limit(request)
    cursor = query_cursor(request)
    rows = await feed_rows(limit + 1, author=author,
                           after=None if cursor is None else cursor.key())
    items, next_cursor = split_page(rows, limit)
    return json_response({"items": items, "next_cursor": next_cursor})


@bp.get("/<post_id:int>")
@openapi.definition(
    summary="One post", tag="posts", parameter=docs.path_id("post_id", "post"),
    response=[docs.ok(PostOut, "The post."), *docs.errors(404)],
)
async def get_post(request: Request, post_id: int) -> HTTPResponse:
    """A single post with its author."""
    rows = await Post.filter(id=existing_id(post_id, "post")).values(*POST_FIELDS)
    if not rows:
        raise NotFound("post not found")
    return json_response(post_out(rows[0]))


@bp.post("")
@openapi.definition(
    summary="Write a post", tag="posts", secured=docs.SECURED,
    body=docs.body(PostBody, "The post's content, 1 to 2,000 characters."),
    response=[docs.ok(PostOut, "The new post.", 201), *docs.errors(400, 401, 413)],
)
@authenticated
async def create_post(request: Request) -> HTTPResponse:
    """Publish a post as the signed-in user."""
    body = parse_body(request, PostBody)
    user: User = request.ctx.user
    post = await Post.create(author_id=user.id, content=body.content)
    return json_response(post_out(_row(post, user)), status=201)


@bp.patch("/<post_id:int>")
@openapi.definition(
    summary="Edit a post", tag="posts", secured=docs.SECURED,
    parameter=docs.path_id("post_id", "post"),
    body=docs.body(PostBody, "The new content."),
    response=[docs.ok(PostOut, "The edited post."), *docs.errors(400, 401, 403, 404, 413)],
)
@authenticated
async def update_post(request: Request, post_id: int) -> HTTPResponse:
    """Replace the content of one of the caller's posts."""
    post = await _own_post(request, post_id)
    body = parse_body(request, PostBody)
    post.content = body.content
    await post.save(update_fields=["content", "updated_at"])
    return json_response(post_out(_row(post, request.ctx.user)))


@bp.delete("/<post_id:int>")
@openapi.definition(
    summary="Delete a post", tag="posts", secured=docs.SECURED,
    parameter=docs.path_id("post_id", "post"),
    response=[docs.ok(None, "Deleted.", 204), *docs.errors(401, 403, 404)],
)
@authenticated
async def delete_post(request: Request, post_id: int) -> HTTPResponse:
    """Delete one of the caller's posts."""
    post = await _own_post(request, post_id)
    await post.delete()
    return HTTPResponse(status=204)
