"""Service settings: one frozen dataclass, built once from the environment.

Bad values fail loudly at start-up (``SettingsError``); nothing reads ``os.environ`` on a
request.  The cache middleware has its own settings (``middleware.settings``) because it is a
library that knows nothing of this service.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

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


def _log_level(env: Mapping[str, str], default: str) -> str:
    raw = env.get("LOG_LEVEL", "").strip().upper() or default
    if raw not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise SettingsError(
            f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}")
    return raw


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
        return cls(
            host=env.get("HOST", cls.host) or cls.host,
            port=_int(env, "PORT", cls.port, minimum=0),
            workers=_int(env, "WORKERS", cls.workers, minimum=1),
            database_url=normalise_database_url(
                env.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL
            ),
            redis_url=redis_url,
            secret_key=secret,
            secret_key_generated=generated,
            token_ttl_seconds=_int(env, "TOKEN_TTL_SECONDS", cls.token_ttl_seconds, minimum=1),
            request_max_size=_int(env, "REQUEST_MAX_SIZE", cls.request_max_size, minimum=1024),
            cache_enabled=_bool(env, "CACHE_ENABLED", cls.cache_enabled),
            seed_demo=_bool(env, "SEED_DEMO", cls.seed_demo),
            debug=_bool(env, "DEBUG", cls.debug),
            log_level=_log_level(env, cls.log_level),
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
