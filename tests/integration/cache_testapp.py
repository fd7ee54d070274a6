"""A small Sanic app for the cache library's tests, and the backend fixtures' builders.

Not a test module: ``tests/integration/test_cache_*.py`` import it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis, FakeServer
from sanic import Request, Sanic
from sanic.response import HTTPResponse, json

from middleware import (
    CacheBackend, CacheRule, CacheSettings, InvalidationRule, MemoryBackend, RedisBackend,
    ResponseCache, get_cached, install_cache, invalidate_cache, set_cached,
)


@dataclass
class Gate:
    """Lets a test hold a handler between reading its data and returning it."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class AppState:
    calls: Counter[str] = field(default_factory=Counter)
    items: dict[int, str] = field(default_factory=lambda: {1: "one", 2: "two", 3: "three"})
    gate: Gate | None = None
    fail_next: int = 0


BACKENDS = ["memory", "fakeredis", pytest.param("redis", marks=pytest.mark.redis)]
"""Every library test runs on each backend: in-process, fakeredis, a real redis-server."""


async def open_backend(kind: str, request: pytest.FixtureRequest,
                       settings: CacheSettings) -> CacheBackend:
    """A fresh backend of ``kind``; real Redis entries are isolated by the test namespace."""
    if kind == "memory":
        return MemoryBackend()
    if kind == "fakeredis":
        return RedisBackend(FakeAsyncRedis(server=FakeServer()))
    proc = request.getfixturevalue("redis_server")
    return RedisBackend.from_url(f"redis://{proc.host}:{proc.port}/0", settings)


def settings_for_test(**overrides: Any) -> CacheSettings:
    base = CacheSettings(namespace=f"t{uuid.uuid4().hex[:12]}", breaker_failures=2,
                         breaker_reset_seconds=60.0, max_body_bytes=2000)
    return replace(base, **overrides)


def identify(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header.removeprefix("Bearer user-") if header.startswith("Bearer user-") else None


RULES = [
    CacheRule("/items", ttl=30, query=("limit", "tag"), tags=("items:list",)),
    CacheRule("/items/<item_id:int>", ttl=30, tags=("item:{item_id}",)),
    CacheRule("/slow/<item_id:int>", ttl=30, tags=("item:{item_id}",)),
    CacheRule("/strict/<item_id:int>", ttl=30, tags=("item:{item_id}",), local=False),
    CacheRule("/me", ttl=30, per_user=True, tags=("me",)),
    CacheRule("/public", ttl=30, public=True, tags=("public",)),
    CacheRule("/status/<code:int>", ttl=30),
    CacheRule("/big", ttl=30),
    CacheRule("/cookie", ttl=30),
    CacheRule("/private", ttl=30),
    CacheRule("/vary", ttl=30),
    CacheRule("/unfit", ttl=30),
    CacheRule("/names/<name>", ttl=30),
    CacheRule("/names/<first>/<second>", ttl=30),
    InvalidationRule("POST", "/items", clears=("items:list",)),
    InvalidationRule("PATCH", "/items/<item_id:int>", clears=("items:list", "item:{item_id}")),
    InvalidationRule("POST", "/items/<item_id:int>/explode", clears=("item:{item_id}",)),
    InvalidationRule("DELETE", "/items/<item_id:int>",
                     clears=lambda request: ("items:list", f"item:{request.ctx.deleted}")),
]


def build_app(backend: CacheBackend | None, settings: CacheSettings,
              observer: Any = None,
              state: AppState | None = None,
              rules: list[CacheRule | InvalidationRule] | None = None,
              ) -> tuple[Sanic, AppState, ResponseCache]:
    """The app: item routes, a slow route, per-user/public/uncacheable routes, helpers.

    ``state``: the "database"; two apps given the same one are two instances of a service.
    ``rules``: instead of ``RULES`` (every rule must match a route of this app).
    """
    app = Sanic(f"cachetest_{uuid.uuid4().hex[:10]}")
    app.config.AUTO_EXTEND = False  # the library needs no sanic-ext; start-up stays fast
    state = state if state is not None else AppState()

    @app.route("/items", methods=["GET", "HEAD"])
    async def list_items(request: Request) -> HTTPResponse:
        state.calls["list"] += 1
        limit = int(request.args.get("limit", "100"))
        return json({"items": [state.items[k] for k in sorted(state.items)][:limit]},
                    headers={"x-total-count": str(len(state.items))})

    @app.get("/items/<item_id:int>")
    async def get_item(request: Request, item_id: int) -> HTTPResponse:
        state.calls[f"item:{item_id}"] += 1
        return json({"id": item_id, "name": state.items.get(item_id)})

    @app.get("/strict/<item_id:int>")
    async def strict_item(request: Request, item_id: int) -> HTTPResponse:
        state.calls[f"strict:{item_id}"] += 1
        return json({"id": item_id, "name": state.items.get(item_id)})

    @app.get("/slow/<item_id:int>")
    async def slow_item(request: Request, item_id: int) -> HTTPResponse:
        state.calls[f"slow:{item_id}"] += 1
        value = state.items.get(item_id)  # read "the database" first...
        if state.gate is not None:
            state.gate.entered.set()
            await state.gate.release.wait()  # ...then take a while to answer
        if state.fail_next:
            state.fail_next -= 1
            return json({"error": "boom"}, status=500)
        return json({"id": item_id, "name": value})

    @app.post("/items")
    async def create_item(request: Request) -> HTTPResponse:
        new_id = max(state.items) + 1
        state.items[new_id] = request.json["name"]
        return json({"id": new_id}, status=201)

    @app.patch("/items/<item_id:int>")
    async def update_item(request: Request, item_id: int) -> HTTPResponse:
        state.items[item_id] = request.json["name"]
        return json({"id": item_id, "name": state.items[item_id]})

    @app.post("/items/<item_id:int>/explode")
    async def update_then_fail(request: Request, item_id: int) -> HTTPResponse:
        state.items[item_id] = "committed before the failure"
        return json({"error": "boom"}, status=500)

    @app.delete("/items/<item_id:int>")
    async def delete_item(request: Request, item_id: int) -> HTTPResponse:
        state.items.pop(item_id, None)
        request.ctx.deleted = item_id
        return HTTPResponse(status=204)

    @app.get("/me")
    async def me(request: Request) -> HTTPResponse:
        state.calls["me"] += 1
        return json({"user": identify(request)})

    @app.get("/public")
    async def public(request: Request) -> HTTPResponse:
        state.calls["public"] += 1
        return json({"public": True})

    @app.get("/status/<code:int>")
    async def status(request: Request, code: int) -> HTTPResponse:
        state.calls[f"status:{code}"] += 1
        return json({"code": code}, status=code)

    @app.get("/big")
    async def big(request: Request) -> HTTPResponse:
        state.calls["big"] += 1
        return json({"data": "x" * 5000})

    @app.get("/cookie")
    async def cookie(request: Request) -> HTTPResponse:
        state.calls["cookie"] += 1
        response = json({"cookie": True})
        response.add_cookie("session", "abc")
        return response

    @app.get("/private")
    async def private(request: Request) -> HTTPResponse:
        state.calls["private"] += 1
        return json({"private": True}, headers={"cache-control": "private"})

    @app.get("/vary")
    async def vary(request: Request) -> HTTPResponse:
        state.calls["vary"] += 1
        return json({"lang": request.headers.get("accept-language")},
                    headers={"vary": "Accept-Language"})

    @app.get("/unfit")
    async def unfit(request: Request) -> HTTPResponse:
        state.calls["unfit"] += 1  # a content type longer than a record can hold
        return HTTPResponse(b"{}", content_type="application/json; p=" + "x" * 300)

    @app.get("/names/<name>")
    async def one_name(request: Request, name: str) -> HTTPResponse:
        return json({"names": [name]})

    @app.get("/names/<first>/<second>")
    async def two_names(request: Request, first: str, second: str) -> HTTPResponse:
        return json({"names": [first, second]})

    @app.get("/helper-backed")
    async def helper_backed(request: Request) -> HTTPResponse:
        state.calls["helper"] += 1
        value = await get_cached("profile:1")
        if value is None:
            state.calls["helper-compute"] += 1
            value = {"name": state.items[1]}
            await set_cached("profile:1", value, ttl=60)
        return json(value)

    @app.get("/helper-slow")
    async def helper_slow(request: Request) -> HTTPResponse:
        value = await get_cached("profile:1")
        if value is None:
            value = {"name": state.items[1]}  # read "the database" first...
            gate = state.gate
            if gate is not None:
                gate.entered.set()
                await gate.release.wait()  # ...then take a while to store it
            await set_cached("profile:1", value, ttl=60)
        return json(value)

    @app.post("/helper/invalidate/<prefix>")
    async def helper_invalidate(request: Request, prefix: str) -> HTTPResponse:
        await invalidate_cache(prefix)
        return json({"ok": True})

    cache = install_cache(app, rules=RULES if rules is None else rules, settings=settings,
                          backend=backend,
                          identify=identify, observer=observer)
    return app, state, cache
