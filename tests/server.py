"""Run a Sanic app on a real loopback port inside the test's event loop.

sanic-testing's ``SanicASGITestClient`` replays start-up and shut-down listeners around every
request, and its ``ReusableClient`` owns a private event loop; the tests need the app started
once (database, cache, pools) and driven from async code, so this is ``ReusableClient``'s recipe
on the running loop, with sanic-testing's ``TestingResponse`` for ``.status`` / ``.json``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sanic import Sanic
from sanic.application.state import ApplicationServerInfo
from sanic_testing.testing import TestingResponse


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Client(httpx.AsyncClient):
    """httpx client whose responses are sanic-testing ``TestingResponse`` objects."""

    async def request(self, *args: Any, **kwargs: Any) -> TestingResponse:  # type: ignore[override]
        response = await super().request(*args, **kwargs)
        response.__class__ = TestingResponse
        return response  # type: ignore[return-value]

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def running(app: Sanic) -> AsyncIterator[Client]:
    """Start ``app`` on a free loopback port, yield a client for it, stop it cleanly.

    The listening socket is bound here and handed to Sanic, so no other process can take the
    port between choosing and binding it. A start-up that fails still runs the shut-down
    listeners, so the ORM and the cache are not left open for the next test.
    """
    Sanic.test_mode = True
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    app.state.server_info.append(
        ApplicationServerInfo(settings={"version": "1.1", "ssl": None, "unix": None,
                                        "sock": None, "loop": None, "host": "127.0.0.1",
                                        "port": port})
    )
    app.router.reset()
    app.signal_router.reset()
    loop = asyncio.get_running_loop()
    server = None
    try:
        await app._startup()  # noqa: SLF001 - the documented low-level server API needs it
        await app._server_event("init", "before", loop=loop)  # noqa: SLF001
        server = await app.create_server(sock=sock, return_asyncio_server=True,
                                         access_log=False)
        assert server is not None
        await server.startup()
        await server.start_serving()
        await app._server_event("init", "after", loop=loop)  # noqa: SLF001
        async with Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        await app._server_event("shutdown", "before", loop=loop)  # noqa: SLF001
        if server is not None:
            server.close()
            await server.wait_closed()
        sock.close()
        await app._server_event("shutdown", "after", loop=loop)  # noqa: SLF001
