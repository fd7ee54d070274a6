"""Time every statement a Tortoise connection runs, without touching models or handlers.

Tortoise has no query hook, but every ORM query ends in one of the client's ``execute_*``
methods.  ``instrument_client`` wraps those on one client *instance* (not the class, so other
apps in the same process are untouched), and wraps ``_in_transaction`` so the per-transaction
clients Tortoise creates are instrumented as well.  The time includes waiting for a pooled
connection: it is the latency the handler sees.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

Observe = Callable[[str, float], None]
"""Called with (operation, seconds) after each statement, failed ones included."""

_OPERATIONS = {
    "execute_query": "query",
    "execute_query_dict": "query",
    "execute_insert": "insert",
    "execute_many": "many",
    "execute_script": "script",
}
_MARK = "_statement_timing"


def _timed(method: Callable[..., Awaitable[Any]], operation: str,
           observe: Observe) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            observe(operation, time.perf_counter() - started)

    return timed


def instrument_client(client: Any, observe: Observe) -> Any:
    """Wrap ``client``'s statement methods (idempotent); returns ``client``."""
    if getattr(client, _MARK, None) is observe:
        return client
    for name, operation in _OPERATIONS.items():
        method = getattr(client, name, None)  # bound: the class's, or a wrapper already set
        if method is not None:
            setattr(client, name, _timed(method, operation, observe))
    open_transaction = type(client)._in_transaction.__get__(client)

    def in_transaction() -> Any:
        context = open_transaction()
        # Pooled/nested contexts hold the transaction client as .client, SQLite's as .connection.
        inner = getattr(context, "client", None) or getattr(context, "connection", None)
        if inner is not None and inner is not client:
            instrument_client(inner, observe)
        return context

    client._in_transaction = in_transaction
    setattr(client, _MARK, observe)
    return client
