"""Background refreshes for ``stale-while-revalidate``: the route's handler, run apart.

How the handler runs without a client waiting (Sanic's middleware model): the request hook
answers the stale entry itself (a short-circuit, so Sanic never calls the handler), and
starts a task that calls the matched route's handler the way Sanic's ``handle_request`` does,
``route.handler(request, **request.match_info)``, on a *copy* of the request: its own ``ctx``
(a shallow copy, so what earlier request middleware put there is still there), no stream (the
connection goes on serving the client's next request) and response middleware marked as run
(the copy's response is never sent). Whatever decorators wrap the handler (authentication,
validation) run as usual; request middleware registered before the cache's already ran for
the original request, and response middleware do not run (the stored record keeps only
``policy.STORED_HEADERS`` anyway). The alternatives cost more: letting the stale-finding
request wait for the handler puts a miss's latency back on one client per expiry, and an
internal HTTP re-request needs the server's own address, a forged-request guard and the
caller's credentials.

One refresh per key and process: the lookup that finds the entry stale leads the key's
single flight (``stampede``), so later lookups serve stale without starting another (and
misses on the key wait for the refresh). The refresh stores under the generations read
*before* it ran, like any miss, so a write landing meanwhile leaves its result invalid. A
refresh that fails (an exception, a non-200, ``stampede_timeout``) stores nothing; the next
stale lookup tries again. Handlers that stream (``request.respond``) cannot be refreshed:
give their rules no ``stale_while_revalidate``. A HEAD answers stale but starts no refresh.

Across processes the lock is not shared: every worker (and instance) that finds the entry
stale before the first refresh has stored its record starts one, so a key sees at most one
refresh per process per expiry, and one in total when the handler is faster than the gap
between two workers' first stale lookups. A shared lock would cost a Redis command on every
stale answer and a wider backend protocol.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

from sanic import Request
from sanic.response import HTTPResponse

from middleware.backends.base import CacheBackendError
from middleware.record import Record

if TYPE_CHECKING:
    from middleware.cache import Lookup, ResponseCache

__all__ = ["Refreshes"]

log = logging.getLogger(__name__)

Store = Callable[[Request, HTTPResponse], Awaitable[Record | None]]


def detached(request: Request) -> Request:
    """A copy of ``request`` a handler can run on after the original was answered."""
    clone = copy.copy(request)
    clone._ctx = copy.copy(request.ctx)  # noqa: SLF001 - Request keeps its ctx in a slot
    clone.stream = None
    clone.responded = False
    clone._response_middleware_started = True  # noqa: SLF001 - never sent
    return clone


class Refreshes:
    """The background refreshes running in this process (cancelled at shutdown)."""

    __slots__ = ("_tasks", "cache", "timeout")

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache
        self.timeout = cache.settings.stampede_timeout
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, request: Request, found: Lookup, route: str, store: Store) -> None:
        """Run the handler of ``request``'s route on a copy and ``store`` its response (the
        record, or ``None`` when it was not storable); ends the single flight ``found``
        leads, whatever happens."""
        task = asyncio.create_task(self._run(detached(request), found, route, store),
                                   name=f"cache-refresh {request.path}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, request: Request, found: Lookup, route: str, store: Store) -> None:
        cache = self.cache
        record: Record | None = None
        try:
            handler: Any = request.route.handler  # type: ignore[union-attr]
            response = handler(request, **request.match_info)
            if isawaitable(response):
                response = await asyncio.wait_for(response, self.timeout)
            if isinstance(response, HTTPResponse):
                record = await store(request, response)
            if record is not None:
                cache.refreshes += 1
            else:
                cache.refresh_failures += 1
                log.warning("Refreshing a stale entry of %s: the handler's response could not "
                            "be stored; served stale until its window ends", route)
        except CacheBackendError as exc:
            cache.failed(exc, route, "refresh")
        except Exception:  # the handler failed (the database is down...): not this task's bug
            cache.refresh_failures += 1
            log.warning("Refreshing a stale entry of %s failed; served stale until its window "
                        "ends", route, exc_info=True)
        finally:
            cache.release(found, record)

    async def join(self) -> None:
        """Wait until the refreshes running now have ended (tests, orderly shutdown)."""
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel the refreshes still running (server shutdown) and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
