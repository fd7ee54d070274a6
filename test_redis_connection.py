"""Check the Redis connection the service would make, and say exactly what is wrong.

    python test_redis_connection.py [--url URL] [--ca-certs PATH] [--insecure] [--concurrency N]
    python test_redis_connection.py --rest-url URL --rest-token TOKEN   (Upstash REST)

Defaults come from the same environment as the service (``REDIS_URL``, else
``REDIS_PRIVATE_URL``; ``REDIS_CONNECT_TIMEOUT``, ``REDIS_SOCKET_TIMEOUT``,
``REDIS_TLS_CA_CERTS``, ``REDIS_TLS_INSECURE``) and the client is the service's own: the
pipelined connection ``RedisBackend.from_url`` builds, so a pass here means the service connects
the same way.  It reports TLS (on/off, version, certificate verified or not), PING latency, a
SET/GET/DEL round trip on a throwaway key, that many concurrent commands are all answered on
one connection (the service's one connection per worker) and the server's version.  Passwords
are never printed.

With no Redis URL but ``UPSTASH_REDIS_REST_URL`` and ``UPSTASH_REDIS_REST_TOKEN`` set (or
``--rest-url``/``--rest-token``), it checks the REST endpoint instead, as the service would use
it (``checker_rest``); a wrong token is an authentication failure.

Exit status: 0 all good; 2 bad URL or setting; 3 connection refused or host unreachable;
4 timeout; 5 authentication failed; 6 TLS failure; 1 any other failure.  A failure prints one
line, ``FAIL (<kind>): <reason>``, on stderr; a rejected certificate's reason names the cause
(``certificate verify failed, unknown CA|certificate expired|hostname mismatch: ...``).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import socket
import ssl
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, TextIO, cast
from urllib.parse import urlsplit

from redis import exceptions as redis_errors

from middleware.backends.pipelined import PipelinedRedis, ReplyError
from middleware.backends.redis import RedisBackend
from middleware.settings import CacheSettings, CacheSettingsError, redact_url
from observability.logging import redact

EXIT_OK, EXIT_OTHER, EXIT_CONFIG, EXIT_REFUSED, EXIT_TIMEOUT, EXIT_AUTH, EXIT_TLS = range(7)
DEFAULT_CONCURRENCY = 20

# Error replies that mean the credentials are wrong or missing. PipelinedRedis quotes the
# server's reply inside its own message ("Redis refused AUTH: WRONGPASS ..."), so look anywhere.
_AUTH_REPLIES = ("WRONGPASS", "NOAUTH", "invalid username-password",
                 "without any password configured")
_TLS_PORT_HINT = " (does this port speak TLS? check rediss:// vs redis:// and the port)"
# What a TLS-only server does with a plain client: it resets or closes the connection, or sends
# a TLS alert, which PipelinedRedis reports as a protocol error.
_PLAIN_ON_TLS = ("reset by peer", "closed by the server", "protocol error")


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


def _refused(err: BaseException) -> bool:
    # asyncio raises a plain OSError("Multiple exceptions: [Errno 111] ...") when a host name
    # resolves to several addresses and every one refused, so the errno is only in the text.
    return isinstance(err, ConnectionRefusedError) or \
        f"[Errno {errno.ECONNREFUSED}]" in str(err) or "Connection refused" in str(err)


# OpenSSL's X509_V_ERR_* codes (``SSLCertVerificationError.verify_code``) by the cause they
# name, with what to do about it.
_UNKNOWN_CA = ("unknown CA", "set REDIS_TLS_CA_CERTS to the CA that signed the server's "
               "certificate")
_HOSTNAME = ("hostname mismatch", "connect with a host name the certificate lists, or get a "
             "certificate for this one")
_VERIFY_CAUSES: dict[int, tuple[str, str]] = {
    2: _UNKNOWN_CA,  # unable to get issuer certificate
    18: _UNKNOWN_CA,  # self-signed certificate
    19: _UNKNOWN_CA,  # self-signed certificate in certificate chain
    20: _UNKNOWN_CA,  # unable to get local issuer certificate
    21: _UNKNOWN_CA,  # unable to verify the first certificate
    9: ("certificate not yet valid", "check the clock of this machine"),
    10: ("certificate expired",
         "the server needs a renewed certificate, or this machine's clock is wrong"),
    62: _HOSTNAME,  # hostname mismatch
    64: _HOSTNAME,  # IP address mismatch
}


def _verify_failure(err: ssl.SSLCertVerificationError) -> str:
    """The reason a certificate was rejected, its cause named first (unknown CA, expired,
    hostname mismatch), OpenSSL's own words after it."""
    detail = str(err.verify_message or err.reason or err).rstrip(".")
    cause = _VERIFY_CAUSES.get(err.verify_code)
    if cause is None:
        return f"certificate verify failed: {detail} (X509 error {err.verify_code})"
    name, advice = cause
    return f"certificate verify failed, {name}: {detail} ({advice})"


def classify(exc: BaseException, url: str) -> CheckFailed:
    """Map a Redis / OS / TLS error to one failure class with a readable reason."""
    chain = list(_chain(exc))
    text = redact(str(exc))
    for err in chain:
        if any(reply in str(err) for reply in _AUTH_REPLIES):
            if urlsplit(url).password is None:
                return CheckFailed(EXIT_AUTH, "auth", "the server requires a password and the "
                                   "URL has none (redis://user:password@host:port)")
            return CheckFailed(EXIT_AUTH, "auth", f"Redis rejected the credentials: {err}")
        if "Redis refused SELECT" in str(err):
            # An error reply to the handshake's SELECT ("DB index is out of range"): the URL's
            # database number is what is wrong.
            return CheckFailed(EXIT_CONFIG, "bad URL", f"bad database number: {err}")
        if isinstance(err, redis_errors.AuthenticationError):
            return CheckFailed(EXIT_AUTH, "auth", f"Redis rejected the credentials: {err}")
    for err in chain:
        if isinstance(err, ssl.SSLCertVerificationError):
            return CheckFailed(EXIT_TLS, "TLS", _verify_failure(err))
        if isinstance(err, ssl.SSLError):
            hint = _TLS_PORT_HINT if "WRONG_VERSION_NUMBER" in str(err) else ""
            return CheckFailed(EXIT_TLS, "TLS", f"handshake failed: {err.reason or err}{hint}")
    for err in chain:
        if isinstance(err, (redis_errors.TimeoutError, asyncio.TimeoutError, socket.timeout)):
            # A plain Redis never answers a TLS hello: the connect (TCP + TLS) times out.
            hint = _TLS_PORT_HINT if url.startswith("rediss://") and "connect timed out" in text \
                else ""
            return CheckFailed(EXIT_TIMEOUT, "timeout", f"no answer in time: {text}{hint}")
    for err in chain:
        if _refused(err):
            return CheckFailed(EXIT_REFUSED, "refused",
                               f"nothing accepts connections at {redact_url(url)}")
        if isinstance(err, socket.gaierror):
            return CheckFailed(EXIT_REFUSED, "unreachable", f"cannot resolve the host: {err}")
    if isinstance(exc, redis_errors.ConnectionError):
        if "[SSL: " in text:
            # A TLS error after the handshake (a server that requires a client certificate
            # rejects it on the first read) reaches us as text only: PipelinedRedis does not
            # chain the error it lost the connection with.
            return CheckFailed(EXIT_TLS, "TLS", f"the server ended the TLS session: {text}")
        hint = ""
        if url.startswith("redis://") and any(sign in text for sign in _PLAIN_ON_TLS):
            hint = " (a TLS-only server closes plain connections: try rediss://)"
        return CheckFailed(EXIT_REFUSED, "connection", f"{text}{hint}")
    return CheckFailed(EXIT_OTHER, "error", f"{type(exc).__name__}: {text}")


def _tls_line(url: str, settings: CacheSettings, client: PipelinedRedis) -> str:
    # What the client does, not what the settings ask: the URL's own ssl_cert_reqs=none and
    # ssl_ca_certs override them (RedisBackend.from_url).
    context = client.ssl_context
    if not url.startswith("rediss://") or context is None:
        return "off (redis://): commands and the password travel in clear text"
    ssl_object = _ssl_object(client)
    session = f"{ssl_object.version()}, " if ssl_object is not None else ""
    if context.verify_mode == ssl.CERT_NONE:
        why = "REDIS_TLS_INSECURE is set" if settings.tls_insecure \
            else "the URL says ssl_cert_reqs=none"
        return f"on ({session}certificate NOT verified: {why})"
    ca = client.options.get("ssl_ca_certs") or settings.tls_ca_certs or "the system CA store"
    hostname = "hostname checked" if context.check_hostname else "hostname NOT checked"
    return f"on ({session}certificate verified against {ca}, {hostname})"


def _ssl_object(client: PipelinedRedis) -> ssl.SSLObject | None:
    # PipelinedRedis shows no TLS details (the service needs none), so read its private
    # connection rather than widen its API for this report; if that moves, the version is
    # left out of the TLS line and nothing else changes.
    transport = getattr(getattr(client, "_protocol", None), "transport", None)
    return transport.get_extra_info("ssl_object") if transport is not None else None


async def _execute(client: PipelinedRedis, *commands: tuple[Any, ...]) -> list[Any]:
    """The replies to ``commands`` (one round trip); the first error reply is raised, so an
    error reply fails its check like a lost connection does."""
    replies = await client.execute(commands)
    for reply in replies:
        if isinstance(reply, ReplyError):
            raise reply
    return replies


def _info_field(info: bytes, name: str) -> str:
    for line in info.decode(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return "?"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _client(url: str, settings: CacheSettings) -> PipelinedRedis:
    """The service's own client for ``url``: the one ``RedisBackend.from_url`` builds."""
    try:
        return cast(PipelinedRedis, RedisBackend.from_url(url, settings).client)
    except ValueError as exc:  # redis-py's parse_url: a query option it cannot read
        raise CheckFailed(EXIT_CONFIG, "bad URL", redact(str(exc))) from None
    except ssl.SSLError as exc:  # the TLS context is built here: the CA file holds no CA
        raise CheckFailed(EXIT_CONFIG, "bad setting", f"REDIS_TLS_CA_CERTS "
                          f"{settings.tls_ca_certs!r} is not a PEM CA bundle: {exc}") from None


async def run_checks(url: str, settings: CacheSettings, concurrency: int, out: TextIO) -> None:
    """Run every check against ``url``, printing one line per result; raise on failure."""

    def report(label: str, text: str) -> None:
        print(f"{label:<11}{text}", file=out, flush=True)

    report("URL", str(redact_url(url)))
    client = _client(url, settings)
    step = "connect"
    try:
        started = time.perf_counter()
        await _execute(client, ("PING",))
        report("connect", f"ok in {_ms(time.perf_counter() - started)} (TCP, TLS, AUTH, PING)")
        step = "TLS"
        report("TLS", _tls_line(url, settings, client))
        step = "PING"
        pings = []
        for _ in range(5):
            started = time.perf_counter()
            await _execute(client, ("PING",))
            pings.append(time.perf_counter() - started)
        report("PING", f"{_ms(statistics.median(pings))} (median of 5, max {_ms(max(pings))})")
        step = "round trip"
        key, value = f"{settings.namespace}:checker:{uuid.uuid4().hex}", uuid.uuid4().bytes
        started = time.perf_counter()
        stored, read, deleted = await _execute(
            client, ("SET", key, value, "EX", 30), ("GET", key), ("DEL", key))
        if stored != b"OK" or read != value or deleted != 1:
            raise CheckFailed(EXIT_OTHER, "round trip", f"SET/GET/DEL on {key}: SET said "
                              f"{stored!r}, read back {read!r}, deleted {deleted}")
        report("round trip", f"SET/GET/DEL ok in {_ms(time.perf_counter() - started)} "
                             "(one pipelined round trip)")
        step = "pipelining"
        await _check_pipelining(client, concurrency, report)
        step = "server"
        try:
            (info,) = await _execute(client, ("INFO", "server"))
            report("server", f"Redis {_info_field(info, 'redis_version')}")
        except ReplyError as exc:  # managed services may refuse INFO
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


async def _check_pipelining(client: PipelinedRedis, concurrency: int,
                            report: Callable[[str, str], None]) -> None:
    """The service sends every concurrent request's commands on one connection per worker:
    ``concurrency`` PINGs at once must all be answered without a second connection."""

    async def timed_ping() -> float:
        started = time.perf_counter()
        (pong,) = await _execute(client, ("PING",))
        if pong != b"PONG":
            raise CheckFailed(EXIT_OTHER, "pipelining", f"PING answered {pong!r}")
        return time.perf_counter() - started

    started = time.perf_counter()
    times = await asyncio.gather(*(timed_ping() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    if client.connects != 1:
        raise CheckFailed(EXIT_OTHER, "pipelining", f"{client.connects} connections opened "
                          "during the checks, the service expects one to carry them all")
    report("pipelining", f"{concurrency} concurrent PINGs on one connection: all ok in "
                         f"{_ms(elapsed)}, slowest took {_ms(max(times))}, 1 connection opened")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--url", help="Redis URL (default: REDIS_URL, else REDIS_PRIVATE_URL)")
    parser.add_argument("--ca-certs", help="CA bundle for rediss:// (default REDIS_TLS_CA_CERTS)")
    parser.add_argument("--insecure", action="store_true",
                        help="do not verify the TLS certificate (default REDIS_TLS_INSECURE)")
    parser.add_argument("--rest-url", help="Upstash REST URL (default: UPSTASH_REDIS_REST_URL, "
                        "checked when no Redis URL is set, as the service picks it)")
    parser.add_argument("--rest-token", help="its token (default UPSTASH_REDIS_REST_TOKEN)")
    parser.add_argument("--concurrency", type=_positive_int, default=DEFAULT_CONCURRENCY,
                        help="concurrent PINGs in the pipelining check (default %(default)s)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout,
         err: TextIO = sys.stderr) -> int:
    """Run the checker; returns the exit status."""
    args = parse_args(argv)
    try:
        env = dict(os.environ)
        if args.url:
            env["REDIS_URL"] = args.url
        if args.rest_url or args.rest_token:
            env.pop("REDIS_URL", None)
            env.pop("REDIS_PRIVATE_URL", None)
            env["UPSTASH_REDIS_REST_URL"] = args.rest_url or env.get("UPSTASH_REDIS_REST_URL", "")
            env["UPSTASH_REDIS_REST_TOKEN"] = args.rest_token or env.get(
                "UPSTASH_REDIS_REST_TOKEN", "")
        try:
            settings = CacheSettings.from_env(env)
            if args.ca_certs or args.insecure:
                settings = replace(settings, tls_ca_certs=args.ca_certs or settings.tls_ca_certs,
                                   tls_insecure=args.insecure or settings.tls_insecure)
        except CacheSettingsError as exc:
            raise CheckFailed(EXIT_CONFIG, "bad setting", str(exc)) from None
        if not settings.redis_url and (settings.rest_url or settings.rest_token):
            from checker_rest import run_rest_checks, validate_rest_url  # it imports this module

            url = validate_rest_url(settings.rest_url, settings.rest_token)
            asyncio.run(run_rest_checks(url, settings, args.concurrency, out))
        else:
            url = validate_url(settings.redis_url)
            asyncio.run(run_checks(url, settings, args.concurrency, out))
    except CheckFailed as failure:
        print(f"FAIL ({failure.kind}): {failure.reason}", file=err, flush=True)
        return failure.code
    print("OK", file=out, flush=True)
    return EXIT_OK


if __name__ == "__main__":
    # Run as a script (or with -m) this file is ``__main__``, and ``checker_rest`` imports it
    # again as ``test_redis_connection``: a second copy, whose ``CheckFailed`` this copy's
    # ``except`` would not catch. Run that copy's ``main``, so there is one of each.
    from test_redis_connection import main as _main

    sys.exit(_main())
