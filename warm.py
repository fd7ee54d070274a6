"""Keep an ASGI app started across the invocations of a warm serverless container.

A warm AWS Lambda (or Vercel) container serves many invocations, one at a time, in one process
and one event loop, frozen in between. Mangum's default lifespan handling (``"auto"``) runs
the app's whole start-up and shut-down around *every* invocation: the database pool, the Redis
connection and its restart check are opened and closed each time. ``StartOnce`` runs the
wrapped app's lifespan start-up on the first request of the process and never its shut-down
between requests; the process's end closes the sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

__all__ = ["StartOnce"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# RFC 3986 ``pchar`` and ``/``: what a path may carry unencoded.
_PATH_SAFE = "/!$&'()*+,;=:@~"
_LIFESPAN_SCOPE = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}


async def _reply(replies: asyncio.Queue[Message], task: asyncio.Task[None]) -> Message:
    """The app's next lifespan message; a failure when its lifespan task ended (or raised)
    without one, instead of waiting for ever."""
    getter = asyncio.ensure_future(replies.get())
    await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
    if getter.done():
        return getter.result()
    getter.cancel()
    error = task.exception()
    return {"type": "lifespan.failed",
            "message": repr(error) if error else "the lifespan ended without a reply"}


class StartOnce:
    """An ASGI app that starts the wrapped one (its lifespan ``startup``) on the first request
    of the process and keeps it started: the clients it opened serve every later request.

    A start-up that fails is shut down (what it opened is closed) and tried again by the next
    request. A lifespan scope from the platform starts and stops it too.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._inbox: asyncio.Queue[Message] | None = None
        self._replies: asyncio.Queue[Message] | None = None
        self._task: asyncio.Task[None] | None = None
        self._starting: asyncio.Lock | None = None

    @property
    def started(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        """Run the wrapped app's lifespan start-up, once; raises ``RuntimeError`` if it failed."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:  # concurrent first requests (Vercel may send several)
            if self._task is not None:
                return
            inbox: asyncio.Queue[Message] = asyncio.Queue()
            replies: asyncio.Queue[Message] = asyncio.Queue()
            task = asyncio.ensure_future(self.app(dict(_LIFESPAN_SCOPE), inbox.get, replies.put))
            await inbox.put({"type": "lifespan.startup"})
            reply = await _reply(replies, task)
            if reply["type"] != "lifespan.startup.complete":
                if not task.done():
                    # Let the app close what it opened before it failed.
                    await inbox.put({"type": "lifespan.shutdown"})
                    await _reply(replies, task)
                    await task
                # Forgotten: the next request tries again.
                raise RuntimeError(f"Start-up failed: {reply.get('message', reply['type'])}")
            self._inbox, self._replies, self._task = inbox, replies, task

    async def stop(self) -> None:
        """Run the wrapped app's lifespan shut-down (tests; a platform's lifespan event)."""
        task, inbox, replies = self._task, self._inbox, self._replies
        if task is None or inbox is None or replies is None:
            return
        self._task = self._inbox = self._replies = None
        await inbox.put({"type": "lifespan.shutdown"})
        reply = await _reply(replies, task)
        if not task.done():
            await task
        if reply["type"] != "lifespan.shutdown.complete":
            raise RuntimeError(f"Shut-down failed: {reply.get('message', reply['type'])}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope.get("raw_path") is None:
            # Mangum leaves the optional ``raw_path`` out (None) and gives ``path``
            # percent-decoded; Sanic builds its request URL from ``raw_path`` alone.
            scope["raw_path"] = quote(scope["path"], safe=_PATH_SAFE).encode("ascii")
        await self.start()
        # What reached the sockets while the process was frozen is read first: a Redis
        # connection (or the REST client's keep-alive one) the server closed meanwhile (idle
        # timeout) is then known to be closed and this request connects again, instead of
        # sending its lookup into the closed one and being served uncached. One pass runs the
        # I/O callbacks, the second what they scheduled (asyncio reports a lost connection
        # with ``call_soon``).
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except RuntimeError as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                else:
                    await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
