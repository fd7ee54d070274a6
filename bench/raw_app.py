"""The raw reference: a bare Sanic handler running the feed's SQL on asyncpg, encoded by orjson.

It answers ``GET /api/posts?limit=&cursor=`` with the same bytes as the service's uncached feed
(the same statements, ``models.feed``; the same cursor format; the same JSON options) and
nothing else: no ORM, no middleware, no metrics, no validation beyond what the query needs.
The bench compares the service's uncached feed with it (``raw-asyncpg`` in ``bench.configs``):
what the service costs on top of the database round trip it cannot avoid.  Its pool has the
service's default size (Tortoise's asyncpg client: 1 to 5 connections).

    python -m bench.raw_app --port 8124 --workers 1 --dsn postgresql://postgres@127.0.0.1/bench_x
"""

from __future__ import annotations

import argparse
import logging
from functools import partial

import asyncpg
import orjson
from sanic import Request, Sanic
from sanic.response import HTTPResponse
from sanic.worker.loader import AppLoader

from handlers.pagination import Cursor
from models.feed import FEED, FEED_AFTER

POOL_MIN, POOL_MAX = 1, 5
DEFAULT_LIMIT = 20
_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def create_raw_app(dsn: str) -> Sanic:
    """A Sanic app serving the feed straight from an asyncpg pool."""
    app = Sanic("bench_raw")
    app.config.update(ACCESS_LOG=False, MOTD=False)

    @app.before_server_start
    async def open_pool(app: Sanic) -> None:
        app.ctx.pool = await asyncpg.create_pool(dsn, min_size=POOL_MIN, max_size=POOL_MAX)

    @app.after_server_stop
    async def close_pool(app: Sanic) -> None:
        await app.ctx.pool.close()

    @app.get("/api/posts")
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    loader = AppLoader(factory=partial(create_raw_app, args.dsn))
    app = loader.load()
    app.prepare(host=args.host, port=args.port, workers=args.workers, access_log=False,
                motd=False)
    Sanic.serve(primary=app, app_loader=loader)


if __name__ == "__main__":
    main()
