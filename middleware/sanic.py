"""The Sanic request/response hooks around ``ResponseCache`` (``install.install_cache`` wires them).

The request hook resolves the route's rule (one dict lookup by route name in the
``routes.RouteTable`` bound at start-up),
decides bypass, looks the key up and short-circuits with the stored response on a hit. Sanic
runs response middleware after a short-circuit too, so a hit is marked on ``request.ctx`` and
not stored again. The response hook stores misses and, for successful writes, clears the
rule's tags before the response leaves (also after a 5xx, which may have committed, but only
once the request reached the handler: a request cut short never clears anything).

Stale entries (``middleware.stale``): a stale hit is answered like a hit (``X-Cache: STALE``)
and, for the request that leads the key's refresh, starts it (``middleware.refresh``); a
miss that found a current stale entry serves that entry instead of a 5xx from the handler,
rewriting the error response in place (so response middleware registered before the cache
still run). Every cacheable response carries ``Cache-Status`` (``middleware.status``).

Fail open at one boundary: any ``CacheBackendError`` in these hooks is logged, told to the
breaker, counted, and the request proceeds uncached. A Redis outage is never a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from inspect import isawaitable
from typing import Any

from sanic import Request
from sanic.response import BaseHTTPResponse, HTTPResponse

from middleware.backends.base import CacheBackendError
from middleware.cache import HIT, STALE, Lookup, ResponseCache
from middleware.encoding import IDENTITY, etag_for_coding, negotiate
from middleware.keys import EPOCH_TAG, TagTooLong, canonical_query, response_key
from middleware.record import Record
from middleware.refresh import Refreshes
from middleware.policy import (
    WRITE_METHODS, bypass_reason, cache_control_for, client_wants_refresh, etag_matches,
    is_storable, stored_headers,
)
from middleware.response import CachedResponse, answer_stale
from middleware.routes import ReadRoute, RouteTable
from middleware.rules import CacheRule, InvalidationRule
from middleware.status import CacheStatus

__all__ = ["CacheHooks", "Identify"]

log = logging.getLogger(__name__)

Identify = Callable[[Request], Any]


class _State:
    """What the request hook decided, for the response hook."""

    __slots__ = ("failed", "found", "head", "refresh", "rule")

    def __init__(self, rule: CacheRule, found: Lookup | None, head: bool,
                 failed: bool = False, refresh: bool = False) -> None:
        self.rule = rule
        self.found = found  # None: bypassed, or the lookup failed (``failed``)
        self.head = head
        self.failed = failed
        self.refresh = refresh  # the client asked for a fresh answer


class CacheHooks:
    """The two middleware functions and the route tables they consult."""

    def __init__(self, cache: ResponseCache, rules: Iterable[CacheRule | InvalidationRule],
                 identify: Identify | None = None) -> None:
        self.cache = cache
        self.identify = identify
        self.routes = RouteTable(rules)
        self.status = CacheStatus(cache.settings.status_name)
        self.refreshes = Refreshes(cache)

    def bind(self, routes: Iterable[Any]) -> None:
        """Bind the rules to the app's routes (see ``middleware.routes``)."""
        self.routes.bind(routes)

    async def on_request(self, request: Request) -> HTTPResponse | None:
        """Serve hits (and 304s) without running the handler."""
        route = request.route
        if route is None:
            return None
        method = request.method
        if method != "GET" and method != "HEAD":
            # Request middleware runs once the whole body has arrived, just before the
            # handler: only from here on can a write have committed (see on_response).
            request.ctx.cache_write_started = True
            return None
        read = self.routes.reads.get(route.name)
        if read is None:
            return None
        # One coroutine on the hit path (this one): a hot-tier hit needs no I/O, so the key,
        # the hot tier and the response are plain calls.
        head = method == "HEAD"
        rule = read.rule
        identity: str | None = None
        if rule.per_user and self.identify is not None:
            try:
                result = self.identify(request)
                if isawaitable(result):
                    result = await result
            except Exception:
                # A malformed credential is the handler's to reject; the cache stays out.
                log.warning("identify() failed on %s; bypassing the cache", rule.path,
                            exc_info=True)
                result = None
            identity = None if result is None else str(result)
        key = self._key(request, read, head, identity)
        if key is None:
            return None
        cache = self.cache
        headers = request.headers
        honor = cache.settings.honor_client_no_cache  # off by default: no header reads
        refresh = honor and client_wants_refresh(headers.get("cache-control"),
                                                 headers.get("pragma"), honor)
        if read.hot_ttl is not None and not refresh:
            found = cache.lookup_hot(rule.path, key)
            if found is not None:
                request.ctx.cache_state = _State(rule, found, head)
                return self._answer(request, read, found)
        # Only now the tags: a hot entry is checked against the generations it was stored
        # under, so a hot hit never needs them.
        tags = self._tags(request, read, head)
        if tags is None:
            return None
        try:
            found = await cache.lookup(rule.path, key, tags, refresh=refresh, lead=not head,
                                       hot_ttl=read.hot_ttl, freshness=read.freshness)
        except CacheBackendError as exc:
            cache.failed(exc, rule.path, "lookup")
            request.ctx.cache_state = _State(rule, None, head, failed=True)
            return None
        request.ctx.cache_state = _State(rule, found, head, refresh=refresh)
        if found.record is None:
            return None
        if found.outcome == STALE and found.future is not None:
            self._start_refresh(request, rule, found)
        return self._answer(request, read, found)

    def _key(self, request: Request, read: ReadRoute, head: bool,
             identity: str | None) -> str | None:
        """The request's key, or None when it bypasses the cache (counted)."""
        rule = read.rule
        headers = request.headers
        reason = bypass_reason(
            has_credentials="authorization" in headers or "cookie" in headers,
            per_user=rule.per_user, public=rule.public, identity=identity)
        if reason is not None:
            self._bypass(request, rule, head)
            return None
        return response_key(self.cache.settings.namespace, request.path,
                            canonical_query(request.query_string, read.query), identity)

    def _tags(self, request: Request, read: ReadRoute, head: bool) -> tuple[str, ...] | None:
        """The tags the request's entry depends on, or None when they cannot be had (the
        request bypasses the cache, counted)."""
        rule = read.rule
        try:
            return read.tags.resolve(request)
        except TagTooLong:
            # Oversized request input (the handler will reject it): not worth a log line each.
            log.debug("Oversized cache tag on %s; bypassing the cache", rule.path, exc_info=True)
        except Exception:
            log.exception("Tags of cache rule %s failed; bypassing the cache", rule.path)
        self._bypass(request, rule, head)
        return None

    def _answer(self, request: Request, read: ReadRoute, found: Lookup) -> HTTPResponse:
        """The response of a hit, fresh or stale (a 304 when the client holds its ETag)."""
        cache = self.cache
        record = found.record
        assert record is not None
        headers = request.headers
        stale = found.outcome == STALE
        age = cache.age(record)
        status = self.status.hit(read.ttl - age, found.collapsed)
        coding = negotiate(headers.get("accept-encoding"), record.encoding) if record.encoding \
            else IDENTITY
        inm = headers.get("if-none-match")
        if inm and etag_matches(inm, etag_for_coding(record.etag, coding)):
            out = dict(record.headers)
            out.update({"x-cache": "STALE" if stale else "HIT", "age": str(age),
                        "etag": etag_for_coding(record.etag, coding),
                        "cache-control": read.cache_control, "cache-status": status})
            return HTTPResponse(status=304, headers=out)
        return CachedResponse(record, read.cache_control, age, status, stale=stale,
                              coding=coding, body=cache.representations.body(record, coding))

    def _start_refresh(self, request: Request, rule: CacheRule, found: Lookup) -> None:
        """Refresh a stale entry in the background (``middleware.refresh``)."""
        state = _State(rule, found, head=False)

        async def store(clone: Request, response: HTTPResponse) -> Record | None:
            return await self._store(clone, response, state, found)  # type: ignore[no-any-return]

        self.refreshes.start(request, found, rule.path, store)

    def _bypass(self, request: Request, rule: CacheRule, head: bool) -> None:
        request.ctx.cache_state = _State(rule, None, head)
        self.cache.count_bypass(rule.path)

    async def on_response(self, request: Request, response: BaseHTTPResponse) -> None:
        """Store misses; clear the tags of successful writes before the response leaves."""
        state: _State | None = getattr(request.ctx, "cache_state", None)
        if state is None:
            # A 4xx write changed nothing; a 5xx may have failed after its commit, so it
            # clears like a success (an extra miss costs less than a stale read). A request
            # that never reached the handler (a body cut short, a 503 before the request
            # middleware ran) cannot have written anything: a client hanging up mid-body
            # must not be able to clear the cache.
            if (request.method in WRITE_METHODS and not 400 <= response.status < 500
                    and getattr(request.ctx, "cache_write_started", False)):
                await self._invalidate(request)
            return
        found = state.found
        if found is None:
            # ERROR: the cache was consulted and its backend failed (served uncached, fail
            # open); BYPASS: the request deliberately did not touch the cache.
            if state.failed:
                response.headers["x-cache"] = "ERROR"
                response.headers["cache-status"] = self.status.error()
            else:
                response.headers["x-cache"] = "BYPASS"
                response.headers["cache-status"] = self.status.bypass()
            return
        if found.outcome == HIT or found.outcome == STALE:
            return
        if not isinstance(response, HTTPResponse):  # a stream: nothing to store
            self.cache.release(found, None)
            response.headers["x-cache"] = "MISS"
            response.headers["cache-status"] = self.status.forwarded(
                stale=found.stale is not None, refresh=state.refresh, stored=False)
            return
        if found.stale is not None and response.status >= 500:
            # stale-if-error: the entry's generations were current when looked up.
            self.cache.release(found, None)
            record = found.stale
            age = self.cache.age(record)
            coding = negotiate(request.headers.get("accept-encoding"), record.encoding) \
                if record.encoding else IDENTITY
            answer_stale(response, record, age=age,
                         cache_control=self._cache_control(request, state.rule),
                         cache_status=self.status.stale_on_error(
                             response.status, state.rule.ttl - age),
                         if_none_match=request.headers.get("if-none-match"), coding=coding,
                         body=self.cache.representations.body(record, coding))
            self.cache.stale_on_error += 1
            return
        record = None
        try:
            record = await self._store(request, response, state, found)
        except CacheBackendError as exc:
            self.cache.failed(exc, state.rule.path, "store")
        finally:
            self.cache.release(found, record)
        headers = response.headers
        headers["x-cache"] = "MISS"
        headers["cache-status"] = self.status.forwarded(
            stale=found.stale is not None, refresh=state.refresh, stored=record is not None)
        if "cache-control" not in headers:
            headers["cache-control"] = self._cache_control(request, state.rule)
        if record is not None:
            etag = record.etag
            if record.encoding:
                # Served like a hit: the stored coding, or decoded, per Accept-Encoding.
                coding = negotiate(request.headers.get("accept-encoding"), record.encoding)
                etag = etag_for_coding(etag, coding)
                for name, value in record.headers:
                    if name == "vary":
                        headers["vary"] = value
                if coding != IDENTITY:
                    response.body = self.cache.representations.body(record, coding)
                    headers["content-encoding"] = coding
            headers["etag"] = etag
            if etag_matches(request.headers.get("if-none-match"), etag):
                response.status = 304
                response.body = b""
                for name in ("content-length", "content-type", "content-encoding"):
                    response.headers.pop(name, None)

    def _cache_control(self, request: Request, rule: CacheRule) -> str:
        read = None if request.route is None else self.routes.reads.get(request.route.name)
        return read.cache_control if read is not None else cache_control_for(rule.per_user)

    async def _store(self, request: Request, response: HTTPResponse, state: _State,
                     found: Lookup) -> Any:
        body = response.body
        cache = self.cache
        if state.head or not isinstance(body, bytes) or not is_storable(
                response.status, response.headers, len(body), cache.settings.max_body_bytes,
                cache.settings.vary_handled):
            return None
        record = cache.make_record(
            found, status=response.status,
            content_type=response.content_type or "application/octet-stream",
            headers=stored_headers(response.headers.items()), body=body, compress=True)
        # The record goes to the waiters even if the SET fails: it is what this request saw.
        try:
            await cache.store(found, record, state.rule.storage_ttl, state.rule.path)
        except CacheBackendError:
            cache.release(found, record)
            raise
        return record

    async def _invalidate(self, request: Request) -> None:
        route = request.route
        if route is None:
            return
        rule = self.routes.writes.get((route.name, request.method))
        if rule is None:
            return
        try:
            tags = rule.compiled_tags.resolve(request, expand=False)
        except Exception:
            # A broken rule must not leave stale data behind: clear everything instead. Rules
            # must return no tags (not raise) for writes refused before they could commit,
            # such as a request without a signed-in user, or any client could flush the cache.
            log.exception("Invalidation rule %s %s failed; bumping the global epoch",
                          rule.method, rule.path)
            tags = (EPOCH_TAG,)
        try:
            await self.cache.invalidate(tags, route=rule.path)
        except CacheBackendError as exc:
            self.cache.failed(exc, rule.path, "invalidate")
