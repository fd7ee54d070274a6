"""The peer: the same feed query on FastAPI + fastapi-cache2 with its Redis backend.

This is what a user of the peer writes from its README: ``@cache(expire=...)`` on the route,
``FastAPICache.init(RedisBackend(redis))`` at start-up.  It runs the service's feed SQL (the
query Tortoise generates for ``GET /api/posts``) with asyncpg and returns the same JSON shape,
with the same opaque cursor.  It needs fastapi-cache2's redis<5, so it runs from
``bench/.venv-peer`` (made by ``python -m bench.run``)::

    PEER_DATABASE_URL=postgresql://... PEER_REDIS_URL=redis://127.0.0.1:6390/0 \\
        bench/.venv-peer/bin/uvicorn bench.peer.app:app --port 8124 --loop uvloop --http httptools
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, HTTPException, Query
from fastapi_cache import FastAPICache
from fastapi_cache.backends.redis import RedisBackend
from fastapi_cache.decorator import cache
from redis import asyncio as aioredis

_COLUMNS = ('SELECT p.id, p.content, p.created_at, p.updated_at, p.author_id, u.username '
            'FROM posts p LEFT OUTER JOIN users u ON u.id = p.author_id')
_ORDER = " ORDER BY p.created_at DESC, p.id DESC LIMIT "


def encode_cursor(created_at: datetime, row_id: int) -> str:
    raw = orjson.dumps([created_at.astimezone(UTC).isoformat(), row_id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(token: str) -> tuple[datetime, int]:
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        created, row_id = orjson.loads(raw)
        return datetime.fromisoformat(created).astimezone(UTC), int(row_id)
    except (ValueError, TypeError) as exc:
        raise HTTPException(400, "cursor: is not a valid cursor") from exc


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def feed_sql(limit: int, cursor: tuple[datetime, int] | None,
             author: str | None) -> tuple[str, list[Any]]:
    """The service's feed query: keyset ``created_at <= c AND (created_at < c OR id < i)``."""
    where: list[str] = []
    args: list[Any] = []
    if author is not None:
        args.append(author)
        where.append(f"u.username = ${len(args)}")
    if cursor is not None:
        args.extend(cursor)
        at, key = f"${len(args) - 1}", f"${len(args)}"
        where.append(f"p.created_at <= {at} AND (p.created_at < {at} OR p.id < {key})")
    sql = _COLUMNS + (" WHERE " + " AND ".join(where) if where else "") + _ORDER + str(limit + 1)
    return sql, args


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(os.environ["PEER_DATABASE_URL"],
                                               min_size=2, max_size=10)
    redis = aioredis.from_url(os.environ["PEER_REDIS_URL"])
    FastAPICache.init(RedisBackend(redis), prefix=os.environ.get("PEER_CACHE_PREFIX", "peer"))
    yield
    await app.state.pool.close()
    await redis.close()


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/api/posts")
@cache(expire=30)
async def list_posts(limit: int = Query(20, ge=1, le=100), cursor: str | None = None,
                     author: str | None = None) -> dict[str, Any]:
    """The feed, newest first, keyset-paginated: the service's ``GET /api/posts``.

    No ``Request`` parameter: fastapi-cache2's default key builder puts every argument's repr
    in the key, and a request object's repr differs per request (nothing would ever hit).
    """
    sql, args = feed_sql(limit, decode_cursor(cursor) if cursor else None, author)
    async with app.state.pool.acquire() as conn:
        rows = await conn.fetch(sql, *args)
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor(last["created_at"], last["id"])
    items = [{"id": r["id"], "content": r["content"], "created_at": _iso(r["created_at"]),
              "updated_at": _iso(r["updated_at"]),
              "author": {"id": r["author_id"], "username": r["username"]}} for r in page]
    return {"items": items, "next_cursor": next_cursor}
