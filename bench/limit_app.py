"""The limit: a bare Sanic app answering every request with the same precomputed bytes.

It serves the exact body of the service's feed page (saved by the bench before it starts), so the
comparison measures only what the service adds on top of Sanic itself.

    python -m bench.limit_app --port 8123 --workers 1 --body-file page.json
"""

from __future__ import annotations

import argparse
import logging
from functools import partial
from pathlib import Path

from sanic import Request, Sanic
from sanic.response import HTTPResponse
from sanic.worker.loader import AppLoader


def create_limit_app(body: bytes) -> Sanic:
    """A Sanic app whose every route returns ``body`` as JSON, with no other work."""
    app = Sanic("bench_limit")
    app.config.update(ACCESS_LOG=False, MOTD=False)

    async def page(request: Request, path: str = "") -> HTTPResponse:
        return HTTPResponse(body, content_type="application/json")

    methods = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"]
    app.add_route(page, "/", methods=methods, name="root")
    app.add_route(page, "/<path:path>", methods=methods, name="page")
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--body-file", type=Path, required=True,
                        help="the bytes every request is answered with")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    body = args.body_file.read_bytes()
    loader = AppLoader(factory=partial(create_limit_app, body))
    app = loader.load()
    app.prepare(host=args.host, port=args.port, workers=args.workers, access_log=False,
                motd=False)
    Sanic.serve(primary=app, app_loader=loader)


if __name__ == "__main__":
    main()
