"""Check the Redis connection the service would make, and say exactly what is wrong.

    python test_redis_connection.py [--url URL] [--ca-certs PATH] [--insecure]
                                    [--pool-size N] [--concurrency N]

Defaults come from the same environment as the service (``REDIS_URL``, else
``REDIS_PRIVATE_URL``; ``REDIS_POOL_SIZE``, ``REDIS_*_TIMEOUT``, ``REDIS_TLS_CA_CERTS``,
``REDIS_TLS_INSECURE``) and the pool is built with the cache's own settings
(``middleware.backends.redis.redis_connection_kwargs``), so a pass here means the service
connects the same way.  It reports TLS (on/off, certificate verified or not), PING latency, a
SET/GET/DEL round trip on a throwaway key and the pool's behaviour under more concurrent
commands than it has connections.  Passwords are never printed.

Exit status: 0 all good; 2 bad URL or setting; 3 connection refused or host unreachable;
4 timeout; 5 authentication failed; 6 TLS failure; 1 any other failure.  A failure prints one
line, ``FAIL (<kind>): <reason>``, on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, TextIO
from urllib.parse import urlsplit

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis

from middleware.backends.redis import redis_connection_kwargs
from middleware.settings import CacheSettings, CacheSettingsError, redact_url
from observability.logging import redact

EXIT_OK, EXIT_OTHER, EXIT_CONFIG, EXIT_REFUSED, EXIT_TIMEOUT, EXIT_AUTH, EXIT_TLS = range(7)


class CheckFailed(Exception):
    """A check failed: ``kind`` and ``code`` say which class of failure, ``reason`` why."""

    def __init__(self, code: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.kind, self.reason = code, kind, reason


def validate_url(url: str | None) -> str:
    """Return ``url`` if it is a usable Redis URL, else raise ``CheckFailed`` (bad URL)."""
    if not url:
        raise CheckFailed(EXIT_CONFIG, "bad URL", "no URL: set REDIS_URL or pass --url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise CheckFailed(EXIT_CONFIG, "bad URL", f"{exc} in {redact(url)!r}") from None
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise CheckFailed(EXIT_CONFIG, "bad URL",
                          f"scheme must be redis://, rediss:// or unix://, got {parts.scheme!r}")
    if parts.scheme != "unix" and not parts.hostname:
        raise CheckFailed(EXIT_CONFIG, "bad URL", f"no host in {redact(url)!r}")
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise CheckFailed(EXIT_CONFIG, "bad URL", f"database must be a number, got {db!r}")
    return url


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify(exc: BaseException, url: str) -> CheckFailed:
    """Map a redis-py / OS / TLS error to one failure class with a readable reason."""
    chain = list(_chain(exc))
    text = redact(str(exc))
    for err in chain:
        if isinstance(err, redis_errors.AuthenticationError) or \
                str(err).startswith(("WRONGPASS", "NOAUTH", "invalid username-password")):
            if urlsplit(url).password is None:
                return CheckFailed(EXIT_AUTH, "auth", "the server requires a password and the "
                                   "URL has none (redis://user:password@host:port)")
            return CheckFailed(EXIT_AUTH, "auth", f"Redis rejected the credentials: {err}")
    for err in chain:
        if isinstance(err, ssl.SSLCertVerificationError):
            return CheckFailed(EXIT_TLS, "TLS", "certificate not trusted: "
                               f"{err.verify_message or err.reason} (set REDIS_TLS_CA_CERTS to "
                               "the CA that signed the server's certificate)")
        if isinstance(err, ssl.SSLError):
            return CheckFailed(EXIT_TLS, "TLS", f"handshake failed: {err.reason or err}")
    for err in chain:
        if isinstance(err, (redis_errors.TimeoutError, asyncio.TimeoutError, socket.timeout)):
            hint = " (does this port speak TLS? check rediss:// vs redis:// and the port)" \
                if url.startswith("rediss://") and "connecting" in text else ""
            return CheckFailed(EXIT_TIMEOUT, "timeout", f"no answer in time: {text}{hint}")
    for err in chain:
        if isinstance(err, ConnectionRefusedError) or "Connection refused" in str(err):
            return CheckFailed(EXIT_REFUSED, "refused",
                               f"nothing accepts connections at {redact_url(url)}")
        if isinstance(err, socket.gaierror):
            return CheckFailed(EXIT_REFUSED, "unreachable", f"cannot resolve the host: {err}")
    if isinstance(exc, redis_errors.ConnectionError):
        hint = ""
        if url.startswith("redis://") and "closed by server" in text:
            hint = " (a TLS-only server closes plain connections: try rediss://)"
        return CheckFailed(EXIT_REFUSED, "connection", f"{text}{hint}")
    return CheckFailed(EXIT_OTHER, "error", f"{type(exc).__name__}: {text}")


def _tls_line(url: str, settings: CacheSettings, ssl_object: ssl.SSLObject | None) -> str:
    if not url.startswith("rediss://"):
        return "off (redis://): commands and the password travel in clear text"
    session = f"{ssl_object.version()}, " if ssl_object is not None else ""
    if settings.tls_insecure:
        return f"on ({session}certificate NOT verified: REDIS_TLS_INSECURE is set)"
    ca = settings.tls_ca_certs or "the system CA store"
    return f"on ({session}certificate verified against {ca}, hostname checked)"


async def _ssl_object(pool: BlockingConnectionPool) -> ssl.SSLObject | None:
    connection = await pool.get_connection()
    try:
        writer = getattr(connection, "_writer", None)
        transport = getattr(writer, "transport", None)
        return transport.get_extra_info("ssl_object") if transport else None
    finally:
        await pool.release(connection)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def run_checks(url: str, settings: CacheSettings, concurrency: int, out: TextIO) -> None:
    """Run every check against ``url``, printing one line per result; raise on failure."""

    def report(label: str, text: str) -> None:
        print(f"{label:<11}{text}", file=out, flush=True)

    report("URL", str(redact_url(url)))
    try:
        pool = BlockingConnectionPool.from_url(url, **redis_connection_kwargs(url, settings))
    except ValueError as exc:
        raise CheckFailed(EXIT_CONFIG, "bad URL", str(exc)) from None
    client = Redis.from_pool(pool)
    step = "connect"
    try:
        started = time.perf_counter()
        await client.ping()
        report("connect", f"ok in {_ms(time.perf_counter() - started)} (TCP, TLS, AUTH, PING)")
        step = "TLS"
        report("TLS", _tls_line(url, settings, await _ssl_object(pool)))
        step = "PING"
        pings = []
        for _ in range(5):
            started = time.perf_counter()
            await client.ping()
            pings.append(time.perf_counter() - started)
        report("PING", f"{_ms(statistics.median(pings))} (median of 5, max {_ms(max(pings))})")
        step = "round trip"
        key, value = f"{settings.namespace}:checker:{uuid.uuid4().hex}", uuid.uuid4().bytes
        started = time.perf_counter()
        await client.set(key, value, ex=30)
        read = await client.get(key)
        deleted = await client.delete(key)
        if read != value or deleted != 1:
            raise CheckFailed(EXIT_OTHER, "round trip",
                              f"SET/GET/DEL on {key}: read back {read!r}, deleted {deleted}")
        report("round trip", f"SET/GET/DEL ok in {_ms(time.perf_counter() - started)}")
        step = "pool"
        await _check_pool(client, pool, settings, concurrency, report)
        step = "server"
        try:
            info = await client.info("server")
            report("server", f"Redis {info.get('redis_version', '?')}")
        except redis_errors.ResponseError as exc:  # managed services may refuse INFO
            report("server", f"version not available ({exc})")
    except CheckFailed:
        raise
    except (redis_errors.RedisError, OSError, asyncio.TimeoutError) as exc:
        failure = classify(exc, url)
        if step != "connect" and failure.kind == "error":
            failure.reason = f"{step}: {failure.reason}"
        raise failure from exc
    finally:
        await client.aclose()
        await pool.disconnect()


async def _check_pool(client: Redis, pool: BlockingConnectionPool, settings: CacheSettings,
                      concurrency: int, report: Any) -> None:
    async def timed_ping() -> float:
        started = time.perf_counter()
        await client.ping()
        return time.perf_counter() - started

    started = time.perf_counter()
    times = await asyncio.gather(*(timed_ping() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    # redis-py keeps no public count of a pool's connections; these are its two lists.
    available = getattr(pool, "_available_connections", None)
    in_use = getattr(pool, "_in_use_connections", None)
    opened = "an unknown number of" if available is None or in_use is None else \
        len(available) + len(in_use)
    if isinstance(opened, int) and opened > settings.pool_size:
        raise CheckFailed(EXIT_OTHER, "pool", f"{opened} connections open, more than the "
                          f"pool size {settings.pool_size}")
    report("pool", f"{concurrency} concurrent PINGs through a pool of {settings.pool_size}: "
           f"all ok in {_ms(elapsed)}, {opened} connection(s) opened, "
           f"slowest took {_ms(max(times))} (pool timeout {settings.pool_timeout:g} s)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--url", help="Redis URL (default: REDIS_URL, else REDIS_PRIVATE_URL)")
    parser.add_argument("--ca-certs", help="CA bundle for rediss:// (default REDIS_TLS_CA_CERTS)")
    parser.add_argument("--insecure", action="store_true",
                        help="do not verify the TLS certificate (default REDIS_TLS_INSECURE)")
    parser.add_argument("--pool-size", type=int, help="pool size (default REDIS_POOL_SIZE)")
    parser.add_argument("--concurrency", type=int,
                        help="concurrent PINGs in the pool check (default: 2 x pool size)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout,
         err: TextIO = sys.stderr) -> int:
    """Run the checker; returns the exit status."""
    args = parse_args(argv)
    try:
        env = dict(os.environ)
        if args.url:
            env["REDIS_URL"] = args.url
        try:
            settings = CacheSettings.from_env(env)
            if args.ca_certs or args.insecure or args.pool_size:
                settings = replace(settings, tls_ca_certs=args.ca_certs or settings.tls_ca_certs,
                                   tls_insecure=args.insecure or settings.tls_insecure,
                                   pool_size=args.pool_size or settings.pool_size)
        except CacheSettingsError as exc:
            raise CheckFailed(EXIT_CONFIG, "bad setting", str(exc)) from None
        url = validate_url(settings.redis_url)
        concurrency = args.concurrency or 2 * settings.pool_size
        asyncio.run(run_checks(url, settings, concurrency, out))
    except CheckFailed as failure:
        print(f"FAIL ({failure.kind}): {failure.reason}", file=err, flush=True)
        return failure.code
    print("OK", file=out, flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
