"""The connection checker's Upstash REST half (``test_redis_connection.py`` runs it when the
service would use the REST backend: no Redis URL, ``UPSTASH_REDIS_REST_URL`` and
``UPSTASH_REDIS_REST_TOKEN`` set, or ``--rest-url``/``--rest-token``).

It uses the service's own client (``UpstashBackend.from_settings``: same timeouts, TLS settings,
reply limit and encoding) and reports: TLS, PING latency, a binary SET/GET/DEL round trip in one
``/pipeline`` request (proving ``Upstash-Encoding: base64`` carries every byte), concurrent
PINGs over the keep-alive client, the server version. Failures name their cause: a wrong token
(401/403), nothing listening or an unknown host, a timeout, TLS (certificate causes named as for
``rediss://``), an endpoint that does not speak the protocol.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp

from middleware.backends.rest import (
    RestAuthError, RestClient, RestError, RestProtocolError, RestReplyError, RestTooLarge,
)
from middleware.backends.upstash import UpstashBackend, decode_value
from middleware.settings import CacheSettings
from test_redis_connection import (
    EXIT_AUTH, EXIT_CONFIG, EXIT_OTHER, EXIT_TIMEOUT, CheckFailed, classify,
)

__all__ = ["classify_rest", "run_rest_checks", "validate_rest_url"]


def validate_rest_url(url: str | None, token: str | None) -> str:
    """``url`` if it is a usable REST endpoint with a token, else ``CheckFailed`` (bad URL)."""
    if not url or not token:
        raise CheckFailed(EXIT_CONFIG, "bad setting", "set UPSTASH_REDIS_REST_URL and "
                          "UPSTASH_REDIS_REST_TOKEN together (or --rest-url and --rest-token)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise CheckFailed(EXIT_CONFIG, "bad URL", f"{exc} in {url!r}") from None
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise CheckFailed(EXIT_CONFIG, "bad URL", f"a REST URL is https://<host>, got {url!r}")
    return url


def classify_rest(exc: BaseException, url: str) -> CheckFailed:
    """Map a REST client error to one failure class, naming the cause."""
    if isinstance(exc, RestAuthError):
        return CheckFailed(EXIT_AUTH, "auth", f"the endpoint rejected the token ({exc}): check "
                           "UPSTASH_REDIS_REST_TOKEN (the read-only token cannot write)")
    if isinstance(exc, RestTooLarge):
        return CheckFailed(EXIT_OTHER, "reply too large", str(exc))
    if isinstance(exc, (RestProtocolError, RestReplyError)):
        return CheckFailed(EXIT_OTHER, "protocol", f"not an Upstash REST answer: {exc}")
    cause = exc.__cause__
    if isinstance(cause, asyncio.TimeoutError):
        return CheckFailed(EXIT_TIMEOUT, "timeout", f"no answer in time: {exc}")
    root: BaseException = exc
    while isinstance(root, (RestError, aiohttp.ClientError)) and root.__cause__ is not None:
        root = root.__cause__  # aiohttp's wrappers pose as ssl errors without their details
    failure = classify(root, url)  # refused, unknown host, TLS: as for rediss://
    failure.reason = failure.reason.replace("rediss:// vs redis://", "https:// vs http://")
    if failure.kind in ("error", "connection"):
        failure.reason = str(exc)
    return failure


def _tls_line(url: str, settings: CacheSettings) -> str:
    if not url.startswith("https://"):
        return "off (http://): the token and every value travel in clear text"
    if settings.tls_insecure:
        return "on (certificate NOT verified: REDIS_TLS_INSECURE is set)"
    ca = settings.tls_ca_certs or "the system CA store"
    return f"on (certificate verified against {ca}, hostname checked)"


async def _one(client: RestClient, *command: Any) -> Any:
    (reply,) = await client.execute([command])
    if isinstance(reply, RestReplyError):
        raise reply
    return reply


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def run_rest_checks(url: str, settings: CacheSettings, concurrency: int,
                          out: TextIO) -> None:
    """Run every check against the REST endpoint, one line per result; raise on failure."""

    def report(label: str, text: str) -> None:
        print(f"{label:<11}{text}", file=out, flush=True)

    report("REST URL", url)  # the token is never printed
    client = UpstashBackend.from_settings(settings).client
    step = "connect"
    try:
        started = time.perf_counter()
        await _one(client, "PING")
        report("connect", f"ok in {_ms(time.perf_counter() - started)} (HTTPS, token, PING)")
        report("TLS", _tls_line(url, settings))
        step = "PING"
        pings = []
        for _ in range(5):
            started = time.perf_counter()
            await _one(client, "PING")
            pings.append(time.perf_counter() - started)
        report("PING", f"{_ms(statistics.median(pings))} (median of 5, max {_ms(max(pings))})")
        step = "round trip"
        await _round_trip(client, settings, report)
        step = "keep-alive"
        await _concurrent(client, concurrency, report)
        step = "server"
        try:
            info = await _one(client, "INFO", "server")
            version = next((line.split(":", 1)[1].strip() for line in
                            info.decode(errors="replace").splitlines()
                            if line.startswith("redis_version:")), "?")
            report("server", f"Redis {version}")
        except RestReplyError as exc:
            report("server", f"version not available ({exc})")
    except CheckFailed:
        raise
    except RestError as exc:
        failure = classify_rest(exc, url)
        if step != "connect" and failure.kind in ("error", "protocol"):
            failure.reason = f"{step}: {failure.reason}"
        raise failure from exc
    finally:
        await client.aclose()


async def _round_trip(client: RestClient, settings: CacheSettings,
                      report: Callable[[str, str], None]) -> None:
    key = f"{settings.namespace}:checker:{uuid.uuid4().hex}"
    value = bytes(range(256))  # every byte value: what the base64 encoding must carry
    started = time.perf_counter()
    replies = await client.execute([("SET", key, value, "EX", 30), ("GET", key), ("DEL", key)])
    for reply in replies:
        if isinstance(reply, RestReplyError):
            raise reply
    stored, read, deleted = replies
    if stored != b"OK" or read is None or decode_value(read) != value or deleted != 1:
        raise CheckFailed(EXIT_OTHER, "round trip", f"SET/GET/DEL on {key}: SET said "
                          f"{stored!r}, read back {read!r:.60}, deleted {deleted}")
    report("round trip", f"SET/GET/DEL of all 256 byte values ok in "
                         f"{_ms(time.perf_counter() - started)} (one /pipeline request, "
                         "Upstash-Encoding: base64)")


async def _concurrent(client: RestClient, concurrency: int,
                      report: Callable[[str, str], None]) -> None:
    started = time.perf_counter()
    await asyncio.gather(*(_one(client, "PING") for _ in range(concurrency)))
    report("keep-alive", f"{concurrency} concurrent PINGs on the keep-alive client: all ok in "
                         f"{_ms(time.perf_counter() - started)}")
