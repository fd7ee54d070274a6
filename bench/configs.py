"""The configurations a bench run starts: the service (cache off, memory, Redis without and with
the hot tier, Redis stopped) with 1 and 2 workers, the Upstash REST backend over loopback (1
worker, through the REST stand-in ``tests/upstash_standin.py`` in front of the same Redis), two
1-worker instances sharing one Redis and one PostgreSQL (the mixed workload only), the
compression pair (1 worker, hot tier: bodies stored as they are and asked without
``Accept-Encoding``, or stored brotli-encoded and asked with ``gzip, br``), the limit
(bare Sanic), the raw reference (bare Sanic running the feed's SQL on asyncpg; 1 worker also
with the least a shared cache can do in front, a Redis GET and SET) and the peer (FastAPI +
fastapi-cache2)."""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Server, free_port
from middleware.settings import CacheSettings

ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = ROOT / "bench" / ".venv-peer"

# Shared by every service start so bearer tokens stay valid across workers and restarts.
SECRET_KEY = "bench-secret-" + secrets.token_hex(16)
REST_TOKEN = "bench-rest-" + secrets.token_hex(16)
"""The REST stand-in's bearer token (``upstash-rest``)."""

WORKLOADS = ("hits", "misses", "mixed")
RAW = "raw-asyncpg"
"""The raw reference's configuration name (``bench.raw_app``)."""
RAW_REDIS = "raw-asyncpg-redis"
"""The raw reference with the least a shared cache can do in front (``bench.raw_app --redis``):
what a miss's two Redis round trips cost by themselves."""


@dataclass(frozen=True)
class Config:
    """One server setup.

    ``cache`` is ``off``, ``memory``, ``redis`` (strict: ``CACHE_LOCAL=false``, one ``MGET``
    per hit), ``redis-hot`` (the hot tier on: ``CACHE_LOCAL=true``, the service's default),
    ``redis-down`` (the default ``CACHE_LOCAL``; Redis is stopped after warm-up, so the hot
    tier is off and the memory fallback serves) or ``rest`` (the Upstash REST backend through
    the stand-in in front of the bench's Redis: no hot tier, one HTTP request per hit).
    ``instances`` > 1 starts that many ``python app.py`` processes on their own ports, sharing
    Redis and PostgreSQL."""

    name: str
    kind: str  # "service", "limit", "raw" or "peer"
    workers: int = 1
    cache: str = "off"
    instances: int = 1
    compress: bool = True
    """The cache stores bodies brotli-encoded (the default); False sets
    ``CACHE_COMPRESS_MIN_BYTES`` above ``CACHE_MAX_BODY_BYTES``: bodies stored as they are."""
    accept_encoding: str = ""
    """``Accept-Encoding`` sent with every GET of the measured runs (none when empty)."""
    namespace: str = ""
    """``CACHE_NAMESPACE`` (the service's default when empty): the compression pair keeps its
    entries apart, so one never serves what the other stored."""
    only: tuple[str, ...] = ()
    """Run only these workloads (all that apply when empty)."""

    @property
    def uses_redis(self) -> bool:
        """Redis is up during the measured runs (its commands are counted)."""
        return self.kind == "service" and self.cache in {"redis", "redis-hot", "rest"}

    @property
    def workloads(self) -> tuple[str, ...]:
        if self.instances > 1:
            return ("mixed",)  # writes on one instance, reads on both: the coherence question
        if self.kind == "limit":
            return ("hits",)  # the same bytes for every URL: one workload is the whole story
        if self.kind in {"peer", "raw"}:
            return ("hits", "misses")  # no write API to mix in
        return self.only or WORKLOADS

    @property
    def label(self) -> str:
        return f"{self.name} ({self.workers}w)"


def all_configs(worker_counts: tuple[int, ...] = (1, 2)) -> list[Config]:
    configs: list[Config] = []
    for workers in worker_counts:
        configs += [
            Config("limit", "limit", workers),
            Config("peer", "peer", workers),
            Config(RAW, "raw", workers),
            Config("no-cache", "service", workers, "off"),
            Config("memory", "service", workers, "memory"),
            Config("redis", "service", workers, "redis"),
            Config("redis-hot", "service", workers, "redis-hot"),
            Config("redis-stopped", "service", workers, "redis-down"),
        ]
        if workers == 1:
            configs.append(Config(RAW_REDIS, "raw", 1, "redis"))
            configs.append(Config("upstash-rest", "service", 1, "rest"))
            configs.append(Config("redis-hot-2i", "service", 1, "redis-hot", instances=2))
            configs += compression_pair()
    return configs


COMPRESSION_WORKLOADS = ("hits", "misses")
PLAIN, BR = "redis-hot-plain", "redis-hot-br"
BROWSER_ACCEPT_ENCODING = "gzip, br"


def compression_pair() -> list[Config]:
    """Compression in the cache, side by side (hot tier on, 1 worker): ``redis-hot-plain``
    stores bodies as they are and is asked without ``Accept-Encoding`` (the cache before
    compression); ``redis-hot-br`` stores them brotli-encoded and is asked as browsers ask."""
    return [Config(PLAIN, "service", 1, "redis-hot", compress=False, namespace="bench-plain",
                   only=COMPRESSION_WORKLOADS),
            Config(BR, "service", 1, "redis-hot", accept_encoding=BROWSER_ACCEPT_ENCODING,
                   namespace="bench-br", only=COMPRESSION_WORKLOADS)]


def service_env(config: Config, *, port: int, database_url: str,
                redis_url: str | None, rest_url: str | None = None) -> dict[str, str]:
    """The environment ``python app.py`` gets for ``config``."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"REDIS_URL", "REDIS_PRIVATE_URL", "DATABASE_URL", "CACHE_ENABLED",
                        "CACHE_LOCAL", "UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN"}}
    env.update(HOST="127.0.0.1", PORT=str(port), WORKERS=str(config.workers),
               DATABASE_URL=database_url, SECRET_KEY=SECRET_KEY, SEED_DEMO="false",
               LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    if config.cache == "off":
        env["CACHE_ENABLED"] = "false"
    elif config.cache in {"redis", "redis-hot", "redis-down"}:
        if not redis_url:
            raise ValueError(f"{config.name} needs a Redis URL")
        env["REDIS_URL"] = redis_url
        if config.cache == "redis":
            env["CACHE_LOCAL"] = "false"
        elif config.cache == "redis-hot":
            env["CACHE_LOCAL"] = "true"
    elif config.cache == "rest":
        if not rest_url:
            raise ValueError(f"{config.name} needs the REST stand-in's URL")
        env.update(UPSTASH_REDIS_REST_URL=rest_url, UPSTASH_REDIS_REST_TOKEN=REST_TOKEN)
    if config.namespace:
        # The compression pair: its own keys, and the service's default threshold for br.
        env.pop("CACHE_COMPRESS_MIN_BYTES", None)
        env["CACHE_NAMESPACE"] = config.namespace
    if not config.compress:
        # Above the largest stored body: nothing is ever compressed.
        env["CACHE_COMPRESS_MIN_BYTES"] = str(CacheSettings.from_env(env).max_body_bytes + 1)
    return env


def make_rest_standin(redis_url: str, *, log_dir: Path, name: str = "rest-standin") -> Server:
    """A not-yet-started REST stand-in (``tests/upstash_standin.py``) in front of
    ``redis_url``, stopping by itself after an hour; its URL is ``base_url``."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.upstash_standin", "--redis-url", redis_url,
            "--token", REST_TOKEN, "--port", str(port), "--lifetime", "3600"]
    return Server(name, argv, port=port, log_dir=log_dir, cwd=ROOT, ready_path=None)


def make_server(config: Config, *, log_dir: Path, database_url: str, redis_url: str | None,
                limit_body: Path, peer_prefix: str = "peer", instance: str = "",
                rest_url: str | None = None) -> Server:
    """A not-yet-started :class:`Server` for ``config`` (``instance`` names one of several)."""
    port = free_port()
    name = f"{config.name}-{config.workers}w{instance}"
    if config.kind == "limit":
        argv = [sys.executable, "-m", "bench.limit_app", "--port", str(port),
                "--workers", str(config.workers), "--body-file", str(limit_body)]
        return Server(name, argv, port=port, log_dir=log_dir, cwd=ROOT, ready_path="/health")
    if config.kind == "raw":
        argv = [sys.executable, "-m", "bench.raw_app", "--port", str(port),
                "--workers", str(config.workers), "--dsn",
                database_url.replace("postgres://", "postgresql://", 1)]
        if config.cache == "redis":
            if not redis_url:
                raise ValueError(f"{config.name} needs a Redis URL")
            argv += ["--redis", redis_url]
        return Server(name, argv, port=port, log_dir=log_dir, cwd=ROOT, ready_path="/health")
    if config.kind == "peer":
        if not redis_url:
            raise ValueError("the peer needs a Redis URL")
        env = {**os.environ, "PEER_DATABASE_URL": database_url.replace(
            "postgres://", "postgresql://", 1), "PEER_REDIS_URL": redis_url,
            "PEER_CACHE_PREFIX": peer_prefix}
        argv = [str(PEER_VENV / "bin" / "uvicorn"), "bench.peer.app:app", "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(config.workers), "--loop", "uvloop",
                "--http", "httptools", "--no-access-log", "--log-level", "warning"]
        return Server(name, argv, port=port, env=env, log_dir=log_dir, cwd=ROOT,
                      ready_path="/health")
    env = service_env(config, port=port, database_url=database_url, redis_url=redis_url,
                      rest_url=rest_url)
    return Server(name, [sys.executable, "app.py"], port=port, env=env, log_dir=log_dir,
                  cwd=ROOT, ready_path="/health")
