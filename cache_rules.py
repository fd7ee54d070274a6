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

Stale entries (``middleware.stale``): every read route may serve an entry past its TTL *only
while its tags' generations are current*, i.e. no write rule has cleared it. What a stale
entry can miss is therefore only what bypasses the write rules (an edit made straight in the
database, the seed command), which the TTL alone bounds anyway:

- ``stale_while_revalidate`` = the route's TTL (at most 5 minutes): a popular entry never
  makes a client wait for its refresh; one request per key and worker refreshes it in the
  background. Out-of-band changes show within twice the TTL instead of once.
- ``stale_if_error`` = 10 minutes on every route: a PostgreSQL restart or failover (tens of
  seconds), or a short outage, answers current entries instead of 503s. The cost: each entry
  stays in Redis (and the fallback LRU) for its TTL plus 10 minutes, so rarely read pages
  (deep cursors) occupy memory longer; any eviction policy stays correct.

None of them sends ``stale-while-revalidate``/``stale-if-error`` downstream (RFC 5861
``Cache-Control``): a browser or CDN cannot see this cache's invalidations, so with those
directives it would show a post, a profile or a count that a write had already changed (the
author's own write included), exactly what the generations exist to prevent. Routes keep
``no-cache`` (``private, no-cache`` for /api/auth/me): clients revalidate with the ETag,
which costs no handler call on a hit. ``CacheRule(advertise_stale=True)`` is refused on
tagged rules for that reason.
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

STALE_IF_ERROR = 600
"""Seconds past its TTL a current entry answers instead of a 5xx (a database outage)."""
MAX_STALE_WHILE_REVALIDATE = 300


def _read(path: str, ttl: int, **options: Any) -> CacheRule:
    """A read rule with the service's stale windows (see the module docstring)."""
    return CacheRule(path, ttl=ttl, stale_while_revalidate=min(ttl, MAX_STALE_WHILE_REVALIDATE),
                     stale_if_error=STALE_IF_ERROR, **options)


PAGE = ("limit", "cursor")


def _author_tag(name: str) -> str:
    # The handler strips the parameter; lower-casing both sides can only clear more.
    return f"posts:author:{name.strip().lower()}"


_FEED_TAGS = ("posts:feed",)


def feed_tags(request: Request) -> Iterable[str]:
    """The feed, or one author's posts: a post by ann must not clear bob's list."""
    # Without a query string (the feed's first page, the most read URL) no arguments to parse.
    author = (request.args.get("author") or "").strip() if request.query_string else ""
    return (_author_tag(author),) if author else _FEED_TAGS


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
    _read("/api/posts", FEED_TTL, query=("author", *PAGE), tags=feed_tags),
    _read("/api/posts/<post_id:int>", ITEM_TTL, tags=("post:{post_id}",)),
    _read("/api/jobs", JOBS_LIST_TTL,
          query=("location", "remote", "q", "tag", *PAGE), tags=("jobs:list",)),
    _read("/api/jobs/stats", JOBS_STATS_TTL, tags=("jobs:stats",)),
    _read("/api/jobs/<job_id:int>", ITEM_TTL, tags=("job:{job_id}",)),
    _read("/api/users/list", USERS_LIST_TTL, query=PAGE, tags=("users:list",)),
    _read("/api/users/<user_id:int>", ITEM_TTL, tags=("user:{user_id}",)),
    _read("/api/auth/me", ME_TTL, per_user=True, tags=me_tags),
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
    # With CORS on, every response varies on Origin, but only in headers handlers.cors adds
    # per request (hits included) and a record never keeps: the entry is the same for all.
    cache_settings = replace(
        cache_settings or CacheSettings.from_env(), redis_url=settings.redis_url,
        vary_handled=frozenset({"origin"}) if settings.cors_origins else frozenset())
    return install_cache(app, rules=CACHE_RULES, settings=cache_settings, backend=backend,
                         identify=identify, observer=observer)
