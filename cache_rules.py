"""The service's cache rules: which GET routes are cached, for how long, and what each write
clears. App wiring: this module knows the service's routes; ``middleware/`` does not.

Tags (a read depends on a tag and on every ``:`` prefix of it, see ``middleware.keys``):

==========================  ================================================================
``posts:feed``              GET /api/posts without ``author``
``posts:author:<name>``     GET /api/posts?author=<name> (lower-cased, as written)
``post:<id>``               GET /api/posts/<id>
``jobs:list``               GET /api/jobs (every filter combination)
``jobs:stats``              GET /api/jobs/stats
``job:<id>``                GET /api/jobs/<id>
``users:list``              GET /api/users/list (with followers/following/posts counts)
``user:<id>``               GET /api/users/<id> and the caller's GET /api/auth/me (counts)
==========================  ================================================================

Each write clears exactly what it changes: a post changes the feed, its author's list, the
users' post counts (the list and the author's profile) and, when edited or deleted, the post;
a follow changes both users' counts; a job write changes the job lists and stats (and the job);
a registration adds a user to the users list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import wraps
from typing import Any

from sanic import Request, Sanic

from handlers.auth import identify
from middleware import (
    CacheBackend, CacheObserver, CacheRule, CacheSettings, InvalidationRule, ResponseCache,
    install_cache,
)
from settings import Settings

FEED_TTL = 30
JOBS_LIST_TTL = 120
JOBS_STATS_TTL = 300
USERS_LIST_TTL = 180
ITEM_TTL = 300
"""Single posts, jobs and users: writes clear them precisely, so they may live longer."""
ME_TTL = 60

PAGE = ("limit", "cursor")


def _author_tag(name: str) -> str:
    # The handler strips the parameter; lower-casing both sides can only clear more.
    return f"posts:author:{name.strip().lower()}"


def feed_tags(request: Request) -> Iterable[str]:
    """The feed, or one author's posts: a post by ann must not clear bob's list."""
    author = (request.args.get("author") or "").strip()
    return (_author_tag(author),) if author else ("posts:feed",)


def me_tags(request: Request) -> Iterable[str]:
    """The caller's own profile depends on their user tag (counts)."""
    user_id = identify(request)
    return (f"user:{user_id}",) if user_id else ()


Clears = Callable[[Request], Iterable[str]]


def _signed_in(clears: Callable[[Request, Any], Iterable[str]]) -> Clears:
    """A write rule that needs the signed-in user (``request.ctx.user``, set by
    ``handlers.auth.authenticated`` before the handler body runs). Without one the write was
    refused (or failed) before it could commit, so it clears nothing: an anonymous client
    must not be able to clear anything, let alone the whole cache."""

    @wraps(clears)
    def rule(request: Request) -> Iterable[str]:
        me = getattr(request.ctx, "user", None)
        return () if me is None else clears(request, me)

    return rule


@_signed_in
def post_created(request: Request, me: Any) -> Iterable[str]:
    return ("posts:feed", _author_tag(me.username), "users:list", f"user:{me.id}")


@_signed_in
def post_edited(request: Request, me: Any) -> Iterable[str]:
    return ("posts:feed", _author_tag(me.username), f"post:{request.match_info['post_id']}")


@_signed_in
def post_deleted(request: Request, me: Any) -> Iterable[str]:
    return ("posts:feed", _author_tag(me.username), f"post:{request.match_info['post_id']}",
            "users:list", f"user:{me.id}")


@_signed_in
def job_created(request: Request, me: Any) -> Iterable[str]:
    return ("jobs:list", "jobs:stats")


@_signed_in
def job_changed(request: Request, me: Any) -> Iterable[str]:
    return ("jobs:list", "jobs:stats", f"job:{request.match_info['job_id']}")


@_signed_in
def follow_changed(request: Request, me: Any) -> Iterable[str]:
    return ("users:list", f"user:{me.id}", f"user:{request.match_info['user_id']}")


CACHE_RULES: tuple[CacheRule | InvalidationRule, ...] = (
    # Reads.
    CacheRule("/api/posts", ttl=FEED_TTL, query=("author", *PAGE), tags=feed_tags),
    CacheRule("/api/posts/<post_id:int>", ttl=ITEM_TTL, tags=("post:{post_id}",)),
    CacheRule("/api/jobs", ttl=JOBS_LIST_TTL,
              query=("location", "remote", "q", "tag", *PAGE), tags=("jobs:list",)),
    CacheRule("/api/jobs/stats", ttl=JOBS_STATS_TTL, tags=("jobs:stats",)),
    CacheRule("/api/jobs/<job_id:int>", ttl=ITEM_TTL, tags=("job:{job_id}",)),
    CacheRule("/api/users/list", ttl=USERS_LIST_TTL, query=PAGE, tags=("users:list",)),
    CacheRule("/api/users/<user_id:int>", ttl=ITEM_TTL, tags=("user:{user_id}",)),
    CacheRule("/api/auth/me", ttl=ME_TTL, per_user=True, tags=me_tags),
    # Writes.
    InvalidationRule("POST", "/api/auth/register", clears=("users:list",)),
    InvalidationRule("POST", "/api/posts", clears=post_created),
    InvalidationRule("PATCH", "/api/posts/<post_id:int>", clears=post_edited),
    InvalidationRule("DELETE", "/api/posts/<post_id:int>", clears=post_deleted),
    InvalidationRule("POST", "/api/jobs", clears=job_created),
    InvalidationRule("PATCH", "/api/jobs/<job_id:int>", clears=job_changed),
    InvalidationRule("DELETE", "/api/jobs/<job_id:int>", clears=job_changed),
    InvalidationRule("POST", "/api/users/<user_id:int>/follow", clears=follow_changed),
    InvalidationRule("DELETE", "/api/users/<user_id:int>/follow", clears=follow_changed),
)


def install_service_cache(app: Sanic[Any, Any], settings: Settings,
                          backend: object | None = None,
                          observer: CacheObserver | None = None,
                          cache_settings: CacheSettings | None = None) -> ResponseCache:
    """Install the cache with the service's rules.

    The Redis URL comes from the service ``Settings`` (``REDIS_URL``/``REDIS_PRIVATE_URL``), the
    rest of the cache's variables from ``cache_settings`` (default
    ``CacheSettings.from_env()``); ``backend`` (tests: a ``MemoryBackend`` or a
    ``RedisBackend``) overrides the URL.
    """
    if backend is not None and not isinstance(backend, CacheBackend):
        raise TypeError(f"cache_backend must implement CacheBackend, got {type(backend)!r}")
    cache_settings = replace(cache_settings or CacheSettings.from_env(),
                             redis_url=settings.redis_url)
    return install_cache(app, rules=CACHE_RULES, settings=cache_settings, backend=backend,
                         identify=identify, observer=observer)
