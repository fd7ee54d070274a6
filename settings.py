"""Service settings: one frozen dataclass, built once from the environment.

Bad values fail loudly at start-up (``SettingsError``); nothing reads ``os.environ`` on a
request.  The cache middleware has its own settings (``middleware.settings``) because it is a
library that knows nothing of this service.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from limits import parse as parse_rate_limit

from middleware.settings import ENV_NAMES as CACHE_ENV_NAMES, REMOVED_ENV_NAMES

log = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite://data/app.sqlite3"


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be a boolean (true/false), got {raw!r}")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not 0 <= value <= 60:
        raise SettingsError(f"{name} must be between 0 and 60, got {raw!r}")
    return value


def _rate(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip() or default
    try:
        parse_rate_limit(raw)
    except ValueError:
        raise SettingsError(
            f"{name} must be a rate such as '10/minute' or '5 per 10 seconds', got {raw!r}"
        ) from None
    return raw


def _log_level(env: Mapping[str, str], default: str) -> str:
    raw = env.get("LOG_LEVEL", "").strip().upper() or default
    if raw not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise SettingsError(
            f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}")
    return raw


_ORIGIN = re.compile(r"https?://(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")


def _cors_origins(raw: str) -> tuple[str, ...]:
    """``CORS_ORIGINS``: ``*`` or comma-separated origins as browsers send them
    (``scheme://host[:port]``, lower case, no path or trailing slash)."""
    raw = raw.strip()
    if not raw:
        return ()
    origins = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if "*" in origins:
        if len(origins) > 1:
            raise SettingsError("CORS_ORIGINS is either * or a list of origins, not both")
        return origins
    for origin in origins:
        # Browsers compare the Origin header exactly: "https://a.example/" or an upper-case
        # host would never match, silently.
        if not _ORIGIN.fullmatch(origin):
            raise SettingsError(
                "CORS_ORIGINS must be * or comma-separated origins such as "
                f"https://app.example.com or http://localhost:5173 (lower case, no path), "
                f"got {origin!r}")
    return origins


def normalise_database_url(url: str) -> str:
    """Accept the URL spellings that hosting platforms hand out.

    Render and Railway give ``postgresql://``; Tortoise's asyncpg backend is registered under
    ``postgres://`` (and ``asyncpg://``).
    """
    if url.startswith("postgresql://"):
        return "postgres://" + url[len("postgresql://"):]
    if url.startswith(("postgres://", "asyncpg://", "sqlite://")):
        return url
    raise SettingsError(
        "DATABASE_URL must start with sqlite://, postgres:// or postgresql://, "
        f"got {url.split('://', 1)[0]!r}"
    )


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    host: str = "127.0.0.1"
    """Interface to bind (``HOST``)."""
    port: int = 8000
    """TCP port (``PORT``, as Render, Railway and Heroku set it)."""
    workers: int = 1
    """Sanic worker processes (``WORKERS``)."""
    database_url: str = DEFAULT_DATABASE_URL
    """``DATABASE_URL``: ``sqlite://path`` (embedded default under ./data/) or ``postgres://``."""
    redis_url: str | None = None
    """``REDIS_URL`` (else ``REDIS_PRIVATE_URL``); unset means the in-process cache only."""
    secret_key: str = field(default="", repr=False)
    """``SECRET_KEY`` signing the bearer tokens; a random per-start key when unset."""
    secret_key_generated: bool = False
    """True when ``secret_key`` was generated because ``SECRET_KEY`` was unset."""
    token_ttl_seconds: int = 86_400
    """Lifetime of an access token (``TOKEN_TTL_SECONDS``)."""
    request_max_size: int = 1_048_576
    """Largest accepted request body in bytes (``REQUEST_MAX_SIZE``); larger gets 413."""
    cache_enabled: bool = True
    """``CACHE_ENABLED``: false serves every request uncached (for benchmarks and debugging)."""
    seed_demo: bool = False
    """Load demo data at start-up when the database is empty (``SEED_DEMO``)."""
    debug: bool = False
    """Sanic debug mode (``DEBUG``); never on in production."""
    log_level: str = "INFO"
    """``LOG_LEVEL``: DEBUG, INFO, WARNING, ERROR or CRITICAL."""
    database_retry_seconds: float = 3.0
    """``DATABASE_RETRY_SECONDS``: how long a statement waits for a restarting PostgreSQL
    (``models.db_retry``; 0 turns it off)."""
    database_auto_migrate: bool = False
    """``DATABASE_AUTO_MIGRATE``: apply pending migrations at start-up (one instance at a
    time) instead of refusing to start; an empty database is migrated either way."""
    backlog: int = 2048
    """``BACKLOG``: connections the kernel queues before ``accept`` (Sanic's own default, 100,
    drops SYNs under 1,000 concurrent clients, who then retry after 1, 3 and 7 s). Capped by
    the kernel's ``net.core.somaxconn``."""
    accept_all: bool = True
    """``ACCEPT_ALL``: each worker of ``python app.py`` accepts every waiting connection per
    event-loop pass (``serving.accept``); libuv alone takes one per pass, which under load
    leaves new connections queued for seconds. ``false`` restores libuv's own accept."""
    proxies_count: int | None = None
    """``PROXIES_COUNT``: trusted reverse proxies in front of the service (1 on Render, Railway
    and Heroku), so ``X-Forwarded-For`` gives the real client address; unset trusts none."""
    forwarded_secret: str | None = field(default=None, repr=False)
    """``FORWARDED_SECRET``: trust ``Forwarded`` headers carrying this ``secret=``."""
    metrics_token: str | None = field(default=None, repr=False)
    """``METRICS_TOKEN``: when set, ``/metrics`` requires ``Authorization: Bearer <token>``."""
    auth_max_concurrent_hashes: int = 1
    """``AUTH_MAX_CONCURRENT_HASHES``: argon2 hashes (64 MiB each) a worker runs at once."""
    auth_max_waiting_hashes: int = 16
    """``AUTH_MAX_WAITING_HASHES``: logins/registrations a worker queues for a hash; past that
    it answers 429 with ``Retry-After``."""
    login_rate_per_client: str = "20/minute"
    """``LOGIN_RATE_PER_CLIENT``: login and registration attempts per client address."""
    login_rate_per_username: str = "10/minute"
    """``LOGIN_RATE_PER_USERNAME``: login attempts per username, from any address."""
    cors_origins: tuple[str, ...] = ()
    """``CORS_ORIGINS``: origins whose browser scripts may call the API (``handlers.cors``):
    comma-separated ``scheme://host[:port]``, or ``*`` for any; empty: no CORS headers."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        secret = env.get("SECRET_KEY", "")
        generated = not secret
        if generated:
            secret = secrets.token_urlsafe(48)
        elif len(secret) < 16:
            raise SettingsError("SECRET_KEY must be at least 16 characters")
        redis_url = (env.get("REDIS_URL") or env.get("REDIS_PRIVATE_URL") or "").strip() or None
        if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("REDIS_URL must start with redis://, rediss:// or unix://")
        database_url = normalise_database_url(
            env.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL)
        if generated and not database_url.startswith("sqlite://"):
            # Behind a load balancer every instance would sign with its own random key and
            # users would get random 401s; every restart would sign everyone out.
            raise SettingsError(
                "SECRET_KEY must be set when DATABASE_URL is not the embedded SQLite default: "
                "every instance must sign tokens with the same key (at least 16 characters, "
                "e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))')")
        proxies = env.get("PROXIES_COUNT", "").strip()
        return cls(
            host=env.get("HOST", cls.host) or cls.host,
            port=_int(env, "PORT", cls.port, minimum=0),
            workers=_int(env, "WORKERS", cls.workers, minimum=1),
            database_url=database_url,
            redis_url=redis_url,
            secret_key=secret,
            secret_key_generated=generated,
            token_ttl_seconds=_int(env, "TOKEN_TTL_SECONDS", cls.token_ttl_seconds, minimum=1),
            request_max_size=_int(env, "REQUEST_MAX_SIZE", cls.request_max_size, minimum=1024),
            cache_enabled=_bool(env, "CACHE_ENABLED", cls.cache_enabled),
            seed_demo=_bool(env, "SEED_DEMO", cls.seed_demo),
            debug=_bool(env, "DEBUG", cls.debug),
            log_level=_log_level(env, cls.log_level),
            backlog=_int(env, "BACKLOG", cls.backlog, minimum=1),
            accept_all=_bool(env, "ACCEPT_ALL", cls.accept_all),
            database_retry_seconds=_float(env, "DATABASE_RETRY_SECONDS",
                                          cls.database_retry_seconds),
            database_auto_migrate=_bool(env, "DATABASE_AUTO_MIGRATE",
                                        cls.database_auto_migrate),
            proxies_count=_int(env, "PROXIES_COUNT", 0, minimum=0) if proxies else None,
            forwarded_secret=env.get("FORWARDED_SECRET", "").strip() or None,
            metrics_token=env.get("METRICS_TOKEN", "").strip() or None,
            auth_max_concurrent_hashes=_int(env, "AUTH_MAX_CONCURRENT_HASHES",
                                            cls.auth_max_concurrent_hashes, minimum=1),
            auth_max_waiting_hashes=_int(env, "AUTH_MAX_WAITING_HASHES",
                                         cls.auth_max_waiting_hashes, minimum=0),
            login_rate_per_client=_rate(env, "LOGIN_RATE_PER_CLIENT",
                                        cls.login_rate_per_client),
            login_rate_per_username=_rate(env, "LOGIN_RATE_PER_USERNAME",
                                          cls.login_rate_per_username),
            cors_origins=_cors_origins(env.get("CORS_ORIGINS", "")),
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite://")

    def ensure_data_dir(self) -> None:
        """Create the directory of an embedded SQLite file (``./data/`` by default)."""
        if self.is_sqlite:
            path = self.database_url[len("sqlite://"):].split("?", 1)[0]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)


SERVICE_ENV_NAMES = frozenset({
    "HOST", "PORT", "WORKERS", "DATABASE_URL", "REDIS_URL", "REDIS_PRIVATE_URL", "SECRET_KEY",
    "TOKEN_TTL_SECONDS", "REQUEST_MAX_SIZE", "CACHE_ENABLED", "SEED_DEMO", "DEBUG", "LOG_LEVEL",
    "BACKLOG", "ACCEPT_ALL", "DATABASE_RETRY_SECONDS", "PROXIES_COUNT", "FORWARDED_SECRET",
    "METRICS_TOKEN",
    "AUTH_MAX_CONCURRENT_HASHES", "AUTH_MAX_WAITING_HASHES", "LOGIN_RATE_PER_CLIENT",
    "LOGIN_RATE_PER_USERNAME", "CORS_ORIGINS", "DATABASE_AUTO_MIGRATE",
})
"""Every variable ``Settings.from_env`` reads."""

_CHECKED_PREFIXES = ("CACHE_", "REDIS_")


def settings_warnings(env: Mapping[str, str] | None = None) -> list[str]:
    """One line per variable that is set but does nothing: a removed setting (what replaced
    it) or a ``CACHE_*`` / ``REDIS_*`` name that matches no setting (the closest real one)."""
    env = os.environ if env is None else env
    known = SERVICE_ENV_NAMES | CACHE_ENV_NAMES
    lines = []
    for name in sorted(env):
        if name in REMOVED_ENV_NAMES:
            lines.append(f"{name} is set but has no effect: {REMOVED_ENV_NAMES[name]}")
        elif name.startswith(_CHECKED_PREFIXES) and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            lines.append(f"{name} is set but is not a setting of this service{hint}")
    return lines
