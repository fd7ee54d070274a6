"""The cache's own settings: one frozen dataclass, built once from the environment.

Every variable the cache reads (all optional):

==============================  =========================================================
``REDIS_URL``                   ``redis://``, ``rediss://`` (TLS) or ``unix://``; selects
                                Redis with the in-process cache as fallback. Unset: memory.
``REDIS_PRIVATE_URL``           Used when ``REDIS_URL`` is unset (Railway's private URL).
``REDIS_CLUSTER``               ``true``: ``REDIS_URL`` names any node of a Redis Cluster
                                (``backends.cluster``; default false).
``REDIS_CONNECT_TIMEOUT``       TCP connect timeout in seconds (default 2).
``REDIS_SOCKET_TIMEOUT``        Seconds a command waits for its reply (default 2).
``REDIS_TLS_CA_CERTS``          CA bundle for ``rediss://`` (default: system store).
``REDIS_TLS_INSECURE``          ``true`` disables certificate and hostname checks (default
                                false: verification is on for ``rediss://``).
``CACHE_NAMESPACE``             Prefix of every cache key (default ``rc``).
``CACHE_MEMORY_MAX_ENTRIES``    In-process cache size bound in entries (default 10000).
``CACHE_MEMORY_MAX_BYTES``      In-process cache size bound in bytes (default 64 MiB).
``CACHE_MAX_BODY_BYTES``        Larger response bodies are never stored (default 1 MiB).
``CACHE_BREAKER_FAILURES``      Consecutive Redis failures that open the breaker (default 5).
``CACHE_BREAKER_RESET_SECONDS`` Seconds the breaker stays open before one probe (default 5).
``CACHE_HONOR_CLIENT_NO_CACHE`` ``true``: a request's ``Cache-Control: no-cache`` refreshes
                                the entry (default false: served from the cache).
``CACHE_STAMPEDE_TIMEOUT``      Seconds a coalesced miss waits for the leader (default 10).
``CACHE_MAX_PENDING_TAGS``      Invalidations remembered while Redis is unreachable before
                                they collapse into one global epoch bump (default 1024).
``CACHE_LOCAL``                 ``true`` (default): with Redis, each worker keeps a hot tier
                                that serves hits with zero Redis commands (``hot``).
``CACHE_COMPRESS_MIN_BYTES``    Bodies of at least this many bytes are stored brotli-encoded
                                and served by ``Accept-Encoding`` (default 1024; ``encoding``).
``CACHE_STATUS_NAME``           This cache's name in the ``Cache-Status`` header (RFC 9211;
                                default ``response-cache``).
``UPSTASH_REDIS_REST_URL``      With ``UPSTASH_REDIS_REST_TOKEN`` and no ``REDIS_URL``: the
                                Upstash REST backend (``backends.upstash``), no hot tier.
``UPSTASH_REDIS_REST_TOKEN``    Its bearer token.
``CACHE_REST_MAX_REPLY_BYTES``  Largest REST reply body read (default 4 MiB); larger fails.
==============================  =========================================================
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from middleware.status import serialise_name

__all__ = ["ENV_NAMES", "REMOVED_ENV_NAMES", "CacheSettings", "CacheSettingsError", "redact_url"]

ENV_NAMES = frozenset({
    "REDIS_URL", "REDIS_PRIVATE_URL", "REDIS_CONNECT_TIMEOUT", "REDIS_SOCKET_TIMEOUT",
    "REDIS_CLUSTER",
    "REDIS_TLS_CA_CERTS", "REDIS_TLS_INSECURE", "CACHE_NAMESPACE", "CACHE_MEMORY_MAX_ENTRIES",
    "CACHE_MEMORY_MAX_BYTES", "CACHE_MAX_BODY_BYTES", "CACHE_BREAKER_FAILURES",
    "CACHE_BREAKER_RESET_SECONDS", "CACHE_HONOR_CLIENT_NO_CACHE", "CACHE_STAMPEDE_TIMEOUT",
    "CACHE_MAX_PENDING_TAGS", "CACHE_LOCAL", "CACHE_COMPRESS_MIN_BYTES", "CACHE_STATUS_NAME",
    "UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN", "CACHE_REST_MAX_REPLY_BYTES",
})
"""Every variable ``CacheSettings.from_env`` reads."""

_ONE_CONNECTION = ("the cache uses one pipelined Redis connection per worker, which needs no "
                   "pool; REDIS_SOCKET_TIMEOUT bounds how long a command waits")
REMOVED_ENV_NAMES = {
    "REDIS_POOL_SIZE": _ONE_CONNECTION,
    "REDIS_POOL_TIMEOUT": _ONE_CONNECTION,
    "REDIS_HEALTH_CHECK_INTERVAL": ("a lost connection fails its waiting commands at once and "
                                    "the next command reconnects; nothing to check"),
}
"""Variables earlier versions (and the original quick reference) read, with what replaced them."""


class CacheSettingsError(ValueError):
    """A cache environment variable holds a value the cache cannot use."""


def redact_url(url: str | None) -> str | None:
    """Return ``url`` with any password replaced by ``***`` (safe to log or show)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise CacheSettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise CacheSettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise CacheSettingsError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise CacheSettingsError(f"{name} must be a finite number >= {minimum}, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise CacheSettingsError(f"{name} must be a boolean (true/false), got {raw!r}")


@dataclass(frozen=True)
class CacheSettings:
    """Everything the response cache reads from its environment (see the module docstring)."""

    redis_url: str | None = None
    """``REDIS_URL`` (else ``REDIS_PRIVATE_URL``); ``None`` means the in-process cache only."""
    redis_cluster: bool = False
    """``REDIS_CLUSTER``: the URL names a node of a Redis Cluster; every key of the namespace
    lives in one hash slot (``middleware.backends.cluster``)."""
    connect_timeout: float = 2.0
    """``REDIS_CONNECT_TIMEOUT``: seconds to open a TCP (and TLS) connection."""
    socket_timeout: float = 2.0
    """``REDIS_SOCKET_TIMEOUT``: seconds a command may wait for its reply."""
    tls_ca_certs: str | None = None
    """``REDIS_TLS_CA_CERTS``: CA bundle path for ``rediss://``; ``None`` uses the system store."""
    tls_insecure: bool = False
    """``REDIS_TLS_INSECURE``: skip certificate and hostname verification (never in production)."""
    namespace: str = "rc"
    """``CACHE_NAMESPACE``: prefix of every key, so several apps can share one Redis."""
    memory_max_entries: int = 10_000
    """``CACHE_MEMORY_MAX_ENTRIES``: the in-process LRU keeps at most this many entries."""
    memory_max_bytes: int = 64 * 1024 * 1024
    """``CACHE_MEMORY_MAX_BYTES``: ... and at most this many bytes of records."""
    max_body_bytes: int = 1024 * 1024
    """``CACHE_MAX_BODY_BYTES``: responses with larger bodies are never stored."""
    breaker_failures: int = 5
    """``CACHE_BREAKER_FAILURES``: consecutive connection errors/timeouts that open the breaker."""
    breaker_reset_seconds: float = 5.0
    """``CACHE_BREAKER_RESET_SECONDS``: how long the breaker stays open before one probe."""
    honor_client_no_cache: bool = False
    """``CACHE_HONOR_CLIENT_NO_CACHE``: let ``Cache-Control: no-cache`` requests refresh entries."""
    stampede_timeout: float = 10.0
    """``CACHE_STAMPEDE_TIMEOUT``: seconds a coalesced miss waits for the leading request."""
    max_pending_tags: int = 1024
    """``CACHE_MAX_PENDING_TAGS``: bound on remembered lost invalidations (then: epoch bump)."""
    local_tier: bool = True
    """``CACHE_LOCAL``: with Redis, serve hits from each worker's hot tier (``middleware.hot``),
    coherent through the invalidation channel; false: every hit is one Redis round trip."""
    compress_min_bytes: int = 1024
    """``CACHE_COMPRESS_MIN_BYTES``: stored bodies this large or larger are brotli-encoded
    once and served in the coding each client accepts (``middleware.encoding``); smaller ones
    are stored and served as they are. A value above ``CACHE_MAX_BODY_BYTES`` turns it off."""
    vary_handled: frozenset[str] = frozenset()
    """Request headers (lower case) a stored response may ``Vary`` on although the key does not
    cover them, because the app adds their effect to every response, hits included, after the
    cache and only in headers a record never keeps (``policy.STORED_HEADERS``): ``origin`` for
    a CORS hook that computes ``Access-Control-Allow-Origin`` per request. Not read from the
    environment: the app that installs such a hook sets it."""
    status_name: str = "response-cache"
    """``CACHE_STATUS_NAME``: this cache's member of the ``Cache-Status`` list (RFC 9211),
    sent as a token when it is one, else as a quoted string; printable ASCII only."""
    rest_url: str | None = None
    """``UPSTASH_REDIS_REST_URL``: the Upstash REST endpoint (``https://...upstash.io``), used
    only when ``redis_url`` is unset (``backends.upstash``)."""
    rest_token: str | None = field(default=None, repr=False)
    """``UPSTASH_REDIS_REST_TOKEN``: the REST endpoint's bearer token (required with the URL)."""
    rest_max_reply_bytes: int = 4 * 1024 * 1024
    """``CACHE_REST_MAX_REPLY_BYTES``: a REST reply body larger than this is refused while it
    is read; values that could not be read back within it are not stored."""

    def __post_init__(self) -> None:
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise CacheSettingsError("REDIS_URL must start with redis://, rediss:// or unix://")
        if self.redis_cluster and (self.redis_url or "").startswith("unix://"):
            raise CacheSettingsError("REDIS_CLUSTER needs a redis:// or rediss:// REDIS_URL "
                                     "naming a node of the cluster, not a unix:// socket")
        if not self.namespace or any(c in self.namespace for c in " :\r\n\t"):
            raise CacheSettingsError(
                f"CACHE_NAMESPACE must be non-empty without spaces or ':', got {self.namespace!r}")
        try:
            serialise_name(self.status_name)
        except ValueError:
            raise CacheSettingsError("CACHE_STATUS_NAME must be non-empty printable ASCII, "
                                     f"got {self.status_name!r}") from None
        if self.rest_url and not self.rest_url.startswith(("https://", "http://")):
            raise CacheSettingsError("UPSTASH_REDIS_REST_URL must start with https:// "
                                     "(or http:// for a local stand-in)")
        if bool(self.rest_url) != bool(self.rest_token):
            raise CacheSettingsError("UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN must "
                                     "be set together")
        if self.rest_url and self.rest_max_reply_bytes < 3 * self.max_body_bytes + 8192:
            raise CacheSettingsError(
                f"CACHE_REST_MAX_REPLY_BYTES ({self.rest_max_reply_bytes}) must be at least "
                f"3 x CACHE_MAX_BODY_BYTES + 8192 ({3 * self.max_body_bytes + 8192}): an "
                "entry comes back base64-encoded, its bytes above 0x7f doubled")
        if self.tls_ca_certs and not os.path.isfile(self.tls_ca_certs):
            raise CacheSettingsError(f"REDIS_TLS_CA_CERTS is not a file: {self.tls_ca_certs!r}")

    @property
    def redis_url_redacted(self) -> str | None:
        """The Redis URL with its password replaced by ``***``."""
        return redact_url(self.redis_url)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CacheSettings:
        """Build the settings from ``env`` (default ``os.environ``); bad values raise."""
        env = os.environ if env is None else env
        url = (env.get("REDIS_URL") or env.get("REDIS_PRIVATE_URL") or "").strip() or None
        d = cls
        return cls(
            redis_url=url,
            redis_cluster=_bool(env, "REDIS_CLUSTER", d.redis_cluster),
            connect_timeout=_float(env, "REDIS_CONNECT_TIMEOUT", d.connect_timeout, 0.001),
            socket_timeout=_float(env, "REDIS_SOCKET_TIMEOUT", d.socket_timeout, 0.001),
            tls_ca_certs=env.get("REDIS_TLS_CA_CERTS", "").strip() or None,
            tls_insecure=_bool(env, "REDIS_TLS_INSECURE", d.tls_insecure),
            namespace=env.get("CACHE_NAMESPACE", "").strip() or d.namespace,
            memory_max_entries=_int(env, "CACHE_MEMORY_MAX_ENTRIES", d.memory_max_entries, 1),
            memory_max_bytes=_int(env, "CACHE_MEMORY_MAX_BYTES", d.memory_max_bytes, 1024),
            max_body_bytes=_int(env, "CACHE_MAX_BODY_BYTES", d.max_body_bytes, 0),
            breaker_failures=_int(env, "CACHE_BREAKER_FAILURES", d.breaker_failures, 1),
            breaker_reset_seconds=_float(env, "CACHE_BREAKER_RESET_SECONDS",
                                         d.breaker_reset_seconds, 0.0),
            honor_client_no_cache=_bool(env, "CACHE_HONOR_CLIENT_NO_CACHE",
                                        d.honor_client_no_cache),
            stampede_timeout=_float(env, "CACHE_STAMPEDE_TIMEOUT", d.stampede_timeout, 0.001),
            max_pending_tags=_int(env, "CACHE_MAX_PENDING_TAGS", d.max_pending_tags, 1),
            local_tier=_bool(env, "CACHE_LOCAL", d.local_tier),
            compress_min_bytes=_int(env, "CACHE_COMPRESS_MIN_BYTES", d.compress_min_bytes, 0),
            status_name=env.get("CACHE_STATUS_NAME", "").strip() or d.status_name,
            rest_url=env.get("UPSTASH_REDIS_REST_URL", "").strip() or None,
            rest_token=env.get("UPSTASH_REDIS_REST_TOKEN", "").strip() or None,
            rest_max_reply_bytes=_int(env, "CACHE_REST_MAX_REPLY_BYTES", d.rest_max_reply_bytes,
                                      4096),
        )
