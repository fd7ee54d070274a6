"""Upstash REST backend: the Redis backend's commands over HTTP (``backends.rest``), for hosts
that cannot keep a TCP connection to Redis (serverless functions).

Selected when ``REDIS_URL`` is unset and ``UPSTASH_REDIS_REST_URL`` plus
``UPSTASH_REDIS_REST_TOKEN`` are set. Same data layout, same scripts, same breaker and memory
fallback as ``backends.redis``. HTTP requests per operation:

- lookup: 1 (``POST /`` of one ``MGET``: the entry and its generations);
- miss: 2 (+ ``SET ... PX``), plus one script the first time a tag's counter is missing;
- write: 1 (``EVALSHA`` of the bump script, which also publishes on ``<ns>:inv`` so TCP
  instances' hot tiers sharing the database hear it); a Redis that does not know the script
  yet answers ``NOSCRIPT`` and the script is sent once with ``EVAL`` (2 requests, once);
- the restart check (``backends.incarnation``) rides in front of the first operation of the
  process, of the first after any failure and of the first after ``RECHECK_SECONDS``, in the
  same request (``/pipeline``, which runs in order): one script that reads ``INFO``'s
  ``run_id`` itself, so it costs no extra request. Over TCP a restart drops the connection,
  which triggers the check; over HTTP a Redis restarted behind a healthy endpoint shows no
  error, hence the interval.

**No hot tier.** The hot tier is only trusted while its pub/sub channel is healthy, and REST
cannot subscribe, so with this backend every hit is one request (``CACHE_LOCAL`` is ignored).

**Values.** JSON carries text, not bytes. A value (a binary record) is sent as a JSON string
whose code points are its bytes (Latin-1), which the server stores UTF-8-encoded: bytes below
0x80 (JSON bodies) as they are, the others in two. Reading reverses it. A value written over
TCP (not valid UTF-8 of that form) is returned as it is, so REST instances read TCP instances'
entries; TCP instances see REST-written entries as undecodable, i.e. misses, which they
overwrite. Generations are plain digits either way, so invalidation is shared by both.
(Upstash also takes a raw request body as a command's last argument, ``POST /set/<key>``, but
that puts the key, which holds ``/``, in the URL path, and SRH, the usual self-hosted
stand-in, does not implement it.) Compressed bodies, mostly bytes above 0x7f, nearly double.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from middleware.backends.base import CacheBackendError, random_base
from middleware.backends.incarnation import INIT, PUBLISHED_BUMP
from middleware.backends.redis import is_unavailable_reply
from middleware.backends.rest import (
    RestClient, RestError, RestReplyError, RestTooLarge,
)
from middleware.keys import EPOCH_TAG, generation_key

if TYPE_CHECKING:
    from middleware.settings import CacheSettings

__all__ = ["CHECK_INCARNATION", "RECHECK_SECONDS", "UpstashBackend"]

log = logging.getLogger(__name__)

RECHECK_SECONDS = 300.0
"""How often the restart check runs again while nothing fails: one script command every five
minutes per worker (about 8,600 a month), riding in a request that is sent anyway."""

CHECK_INCARNATION = """
local ok, info = pcall(redis.call, 'INFO', 'server')
local run_id = ''
if ok and type(info) == 'string' then
  run_id = string.match(info, 'run_id:(%w+)') or ''
end
local have = redis.call('GET', KEYS[1])
if have and (run_id == '' or have == run_id) then
  return {0, run_id}
end
redis.call('SET', KEYS[2], ARGV[1])
if run_id == '' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], run_id)
end
redis.call('PUBLISH', ARGV[2], '*')
return {1, run_id}
"""
"""``backends.incarnation``'s restart check as one script (``INFO`` read inside it, so the
check needs no round trip of its own). ``KEYS``: incarnation, epoch. ``ARGV``: a fresh epoch,
the invalidation channel."""


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


_BUMP_SHA, _INIT_SHA = _sha(PUBLISHED_BUMP), _sha(INIT)


def decode_value(raw: bytes) -> bytes:
    """A stored value as the backend wrote it (see the module docstring)."""
    try:
        return raw.decode("utf-8").encode("latin-1")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return raw  # written over TCP: already the value's own bytes


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CacheBackendError(f"upstash: expected an integer, got {value!r:.40}",
                                transient=False) from None


class UpstashBackend:
    """The shared backend over Upstash's REST API (see the module docstring)."""

    name = "upstash"
    shared = True

    def __init__(self, client: RestClient, *, namespace: str = "rc",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.url_redacted = client.url  # the token travels in a header, never in the URL
        self.publish_channel = f"{namespace}:inv"
        """Where bumps publish (for TCP instances' hot tiers); this backend never subscribes."""
        self._check_keys = (f"{namespace}:incarnation", generation_key(namespace, EPOCH_TAG))
        self._checked = False
        self._checked_at = 0.0
        self._clock = clock
        self._incident = object()
        self.resets = 0
        """Restarts of Redis this process detected (the global epoch was reset)."""
        self._warned = False

    @classmethod
    def from_settings(cls, settings: CacheSettings) -> UpstashBackend:
        """A backend on ``settings.rest_url`` with ``settings.rest_token``, the Redis connect
        and socket timeouts, and ``settings.rest_max_reply_bytes``."""
        if not settings.rest_url or not settings.rest_token:
            raise ValueError("the REST backend needs rest_url and rest_token")
        verify: ssl.SSLContext | bool = True
        if settings.tls_ca_certs or settings.tls_insecure:
            verify = ssl.create_default_context(cafile=settings.tls_ca_certs)
            if settings.tls_insecure:
                verify.check_hostname = False
                verify.verify_mode = ssl.CERT_NONE
        client = RestClient(settings.rest_url, settings.rest_token,
                            connect_timeout=settings.connect_timeout,
                            read_timeout=settings.socket_timeout,
                            max_reply_bytes=settings.rest_max_reply_bytes, verify=verify)
        return cls(client, namespace=settings.namespace)

    async def _run(self, operation: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        check = not self._checked or self._clock() - self._checked_at >= RECHECK_SECONDS
        if check:
            commands = [("EVAL", CHECK_INCARNATION, 2, *self._check_keys, random_base(),
                         self.publish_channel), *commands]
        incident = self._incident
        try:
            replies = await self.client.execute(commands)
        except RestTooLarge as exc:
            # An answer, just too big to take: the endpoint is up, so not for the breaker.
            raise CacheBackendError(f"upstash {operation}: {exc}", transient=False) from exc
        except RestError as exc:  # unreachable, timed out, 5xx, 401, not the protocol
            # Requests in flight together when the endpoint failed are one incident for the
            # breaker (as the waiters of one TCP connection are); the next ones a new one.
            if self._incident is incident:
                self._incident = object()
            self._checked = False  # it may come back a restarted Redis: check again
            raise CacheBackendError(f"upstash {operation}: {type(exc).__name__}: {exc}",
                                    transient=True, incident=incident) from exc
        if check:
            self._checked_reply(replies.pop(0))
        return replies

    def _checked_reply(self, reply: Any) -> None:
        if isinstance(reply, RestReplyError):
            raise CacheBackendError(f"upstash restart check: {reply}",
                                    transient=is_unavailable_reply(reply)) from reply
        reset, run_id = reply
        self._checked = True
        self._checked_at = self._clock()
        if not run_id and not self._warned:
            self._warned = True
            log.warning("Redis refused INFO inside a script: a restart from an older snapshot "
                        "cannot be detected; a restart with empty data still is")
        if reset:
            self.resets += 1
            log.warning("Redis has a new incarnation (run_id %s): reset the global epoch, so "
                        "no entry or slow miss from before can be served",
                        run_id.decode() if run_id else "unknown")

    async def _one(self, operation: str, command: tuple[Any, ...]) -> Any:
        (reply,) = await self._run(operation, [command])
        if isinstance(reply, RestReplyError):
            raise CacheBackendError(f"upstash {operation}: {reply}",
                                    transient=is_unavailable_reply(reply)) from reply
        return reply

    async def _script(self, operation: str, sha: str, script: str,
                      args: tuple[Any, ...]) -> Any:
        (reply,) = await self._run(operation, [("EVALSHA", sha, *args)])
        if isinstance(reply, RestReplyError) and str(reply).startswith("NOSCRIPT"):
            return await self._one(operation, ("EVAL", script, *args))
        if isinstance(reply, RestReplyError):
            raise CacheBackendError(f"upstash {operation}: {reply}",
                                    transient=is_unavailable_reply(reply)) from reply
        return reply

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        values = await self._one("MGET", ("MGET", *keys))
        return [None if value is None else decode_value(value) for value in values]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        text = value.decode("latin-1")
        # Read back base64-encoded, its bytes above 0x7f doubled: never store a value whose
        # reply would exceed the reply limit (the generations and JSON add a little).
        if (len(text.encode()) + 2) // 3 * 4 + 4096 > self.client.max_reply_bytes:
            raise CacheBackendError(
                f"upstash SET: a value of {len(value)} bytes would come back larger than "
                "CACHE_REST_MAX_REPLY_BYTES; not stored", transient=False)
        await self._one("SET", ("SET", key, text, "PX", max(1, int(ttl * 1000))))

    async def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        return _int(await self._one("DEL", ("DEL", *keys)))

    async def incr_many(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        args = (len(keys), *keys, *(random_base() for _ in keys), self.publish_channel,
                orjson.dumps(list(keys)).decode())
        return [_int(value) for value in await self._script("INCR", _BUMP_SHA, PUBLISHED_BUMP,
                                                            args)]

    async def init_many(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        args = (len(keys), *keys, *(random_base() for _ in keys))
        return [_int(value) for value in await self._script("INIT", _INIT_SHA, INIT, args)]

    async def ping(self) -> float:
        start = time.perf_counter()
        await self._one("PING", ("PING",))
        return (time.perf_counter() - start) * 1000.0

    async def close(self) -> None:
        await self.client.aclose()
