"""The raw reference: a bare Sanic handler running the feed's SQL on asyncpg, encoded by orjson.

It answers ``GET /api/posts?limit=&cursor=`` with the same bytes as the service's uncached feed
(the same statements, ``models.feed``; the same cursor format; the same JSON options) and
nothing else: no ORM, no middleware, no metrics, no validation beyond what the query needs.
The bench compares the service's uncached feed with it (``raw-asyncpg`` in ``bench.configs``):
what the service costs on top of the database round trip it cannot avoid.  Its pool has the
service's default size (Tortoise's asyncpg client: 1 to 5 connections).

With ``--redis`` it is also the least a shared cache can do (``raw-asyncpg-redis``): a ``GET``
of the request's query string before the query, the body as it is on a hit, and a ``SET`` with
a TTL after a miss, through redis-py's asyncio client (hiredis parser, a pool of 16), with no
generations, tags, record format, headers, compression or fallback.  Its misses show what two
Redis round trips cost on top of the uncached handler by themselves.

    python -m bench.raw_app --port 8124 --workers 1 --dsn postgresql://postgres@127.0.0.1/bench_x
"""

from __future__ import annotations

import argparse
import logging
import secrets
from functools import partial

import asyncpg
import orjson
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sanic import Request, Sanic
from sanic.response import HTTPResponse
from sanic.worker.loader import AppLoader

from handlers.pagination import Cursor
from models.feed import FEED, FEED_AFTER

POOL_MIN, POOL_MAX = 1, 5
DEFAULT_LIMIT = 20
REDIS_POOL = 16
REDIS_TTL = 60
_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def create_raw_app(dsn: str, redis_url: str | None = None, prefix: str = "raw") -> Sanic:
    """A Sanic app serving the feed straight from an asyncpg pool (with ``redis_url``, through
    the least a shared cache can do, its keys under ``prefix``)."""
    app = Sanic("bench_raw")
    app.config.update(ACCESS_LOG=False, MOTD=False)

    @app.before_server_start
    async def open_pool(app: Sanic) -> None:
        app.ctx.pool = await asyncpg.create_pool(dsn, min_size=POOL_MIN, max_size=POOL_MAX)
        app.ctx.redis = None if redis_url is None else redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(
                redis_url, max_connections=REDIS_POOL, timeout=1.0, socket_timeout=1.0,
                socket_connect_timeout=1.0),
            retry=Retry(NoBackoff(), 0))

    @app.after_server_stop
    async def close_pool(app: Sanic) -> None:
        await app.ctx.pool.close()
        if app.ctx.redis is not None:
            await app.ctx.redis.aclose(close_connection_pool=True)

    @app.get("/api/posts")
    async def cached_feed(request: Request) -> HTTPResponse:
        client = app.ctx.redis
        if client is None:
            return await feed(request)
        key = f"{prefix}:{request.query_string}"
        body = await client.get(key)
        if body is not None:
            return HTTPResponse(body, content_type="application/json")
        response = await feed(request)
        await client.set(key, response.body, ex=REDIS_TTL)
        return response

    async def feed(request: Request) -> HTTPResponse:
        limit = int(request.args.get("limit", DEFAULT_LIMIT))
        token = request.args.get("cursor")
        async with app.ctx.pool.acquire() as conn:
            if token:
                cursor = Cursor.decode(token)
                rows = await conn.fetch(FEED_AFTER.postgres, limit + 1, cursor.created_at,
                                        cursor.id)
            else:
                rows = await conn.fetch(FEED.postgres, limit + 1)
        items = [{"id": r[0], "content": r[1], "created_at": r[2], "updated_at": r[3],
                  "author": {"id": r[4], "username": r[5]}} for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = Cursor(rows[limit - 1][2], rows[limit - 1][0]).encode()
        return HTTPResponse(orjson.dumps({"items": items, "next_cursor": next_cursor},
                                         option=_OPTIONS), content_type="application/json")

    @app.get("/health")
    async def health(request: Request) -> HTTPResponse:
        return HTTPResponse(b'{"status":"ok"}', content_type="application/json")

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--dsn", required=True, help="postgresql://... of the seeded database")
    parser.add_argument("--redis", default=None, metavar="URL",
                        help="cache the feed in this Redis (the least a shared cache can do)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # A fresh prefix per start: a run never finds what an earlier one stored.
    prefix = f"raw:{secrets.token_hex(4)}"
    loader = AppLoader(factory=partial(create_raw_app, args.dsn, args.redis, prefix))
    app = loader.load()
    app.prepare(host=args.host, port=args.port, workers=args.workers, access_log=False,
                motd=False)
    Sanic.serve(primary=app, app_loader=loader)


if __name__ == "__main__":
    main()
