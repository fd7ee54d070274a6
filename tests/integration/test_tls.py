"""TLS to Redis: a wrong CA, a wrong host name and an expired certificate never connect.

Each negative is a real TLS redis-server (``tests/tls_redis.py``, trustme certificates) and is
proven three ways: the cache's own client (``RedisBackend.from_url``) refuses it, naming
OpenSSL's verify code; the whole service keeps answering from its in-process memory tier
without ever speaking plain text to the server (a relay in front of it records every
connection's first bytes); and the connection checker exits with a reason naming the cause.
The positive control (right CA, right name) connects through the same code and the same relay,
and ``REDIS_TLS_INSECURE``/``ssl_cert_reqs=none`` connect to the very servers the negatives are
refused by, so the refusals are the certificate checks and nothing else. Verification is on by
default, only those two settings turn it off, and turning it off logs a warning at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

import test_redis_connection as checker
from app import create_app
from middleware import CacheBackendError, CacheSettings, RedisBackend
from middleware.backends.pipelined import PipelinedRedis
from middleware.backends.redis import ssl_context_for
from settings import Settings
from tests.integration.test_service_cache import Statements
from tests.server import Client, running
from tests.tls_redis import tls_files, tls_redis, tls_redis_expired, tls_redis_wrong_host

__all__ = ["tls_files", "tls_redis", "tls_redis_expired", "tls_redis_wrong_host"]

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 2.0
"""Connect and reply timeout of every client here: a refusal must not wait for it anyway."""
INSECURE_WARNING = "Redis TLS certificate verification is OFF"
TLS_HANDSHAKE_RECORD = b"\x16\x03"
"""How every TLS connection starts: a handshake record (0x16), TLS major version 3."""


@dataclass(frozen=True)
class Negative:
    """A server and a client configuration that certificate verification must refuse."""

    server: str
    """The fixture of the TLS redis-server."""
    host: str
    """The host name in the URL (both resolve to the server's 127.0.0.1)."""
    ca: str
    """The CA file the client trusts."""
    codes: frozenset[int]
    """OpenSSL verify codes that name this failure."""
    openssl: str
    """OpenSSL's words for it."""
    cause: str
    """The checker's name for it."""


NEGATIVES = [
    # The server's chain ends in a CA the client does not trust (self-signed in the chain, or
    # no local issuer, depending on what the server sends).
    pytest.param(Negative("tls_redis", "localhost", "other-ca.crt", frozenset({2, 18, 19, 20, 21}),
                          "certificate verify failed", "unknown CA"), id="wrong-ca"),
    pytest.param(Negative("tls_redis_wrong_host", "localhost", "ca.crt", frozenset({62}),
                          "Hostname mismatch", "hostname mismatch"), id="wrong-hostname"),
    pytest.param(Negative("tls_redis_wrong_host", "127.0.0.1", "ca.crt", frozenset({64}),
                          "IP address mismatch", "hostname mismatch"), id="wrong-ip"),
    pytest.param(Negative("tls_redis_expired", "localhost", "ca.crt", frozenset({10}),
                          "certificate has expired", "certificate expired"), id="expired"),
]


@dataclass(frozen=True)
class Target:
    case: Negative
    port: int
    ca: str

    def url(self, port: int | None = None) -> str:
        return f"rediss://{self.case.host}:{port or self.port}/0"


@pytest.fixture(params=NEGATIVES)
def negative(request: pytest.FixtureRequest, tls_files: Path) -> Target:
    case: Negative = request.param
    return Target(case, request.getfixturevalue(case.server), str(tls_files / case.ca))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the outer environment may turn verification off or point elsewhere."""
    for name in ("REDIS_URL", "REDIS_PRIVATE_URL", "REDIS_TLS_CA_CERTS", "REDIS_TLS_INSECURE",
                 "CACHE_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("REDIS_CONNECT_TIMEOUT", "REDIS_SOCKET_TIMEOUT"):
        monkeypatch.setenv(name, str(TIMEOUT))


def settings(ca: str | None = None, **overrides: Any) -> CacheSettings:
    return CacheSettings(connect_timeout=TIMEOUT, socket_timeout=TIMEOUT, tls_ca_certs=ca,
                         **overrides)


def verify_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification error somewhere in ``exc``'s causes, if any."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        current = current.__cause__
    return None


@contextmanager
def server_commands(port: int) -> Iterator[dict[str, int]]:
    """The commands the TLS redis-server at ``port`` ran during the block (by name, with their
    call counts), read from its INFO commandstats over a connection of its own."""
    served: dict[str, int] = {}
    with redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_cert_reqs="none",
                     ssl_check_hostname=False, socket_timeout=10,
                     single_connection_client=True) as admin:
        def calls() -> dict[str, int]:
            stats = admin.info("commandstats")
            return {name: int(stat["calls"]) for name, stat in stats.items()
                    if name != "cmdstat_info"}  # our own reads

        before = calls()
        yield served
        served.update({name: count - before.get(name, 0) for name, count in calls().items()
                       if count != before.get(name, 0)})


# -- the cache's own client ------------------------------------------------------------------

@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_right_ca_and_host_connect(tls_files: Path, tls_redis: int, host: str) -> None:
    """The positive control: verification on, and the round trip works."""
    backend = RedisBackend.from_url(f"rediss://{host}:{tls_redis}/0",
                                    settings(str(tls_files / "ca.crt")))
    client = backend.client
    assert isinstance(client, PipelinedRedis) and client.ssl_context is not None
    assert client.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert client.ssl_context.check_hostname
    key = f"tls:{uuid.uuid4().hex}"
    try:
        assert await backend.ping() > 0
        await backend.set(key, b"value", 30)
        assert await backend.get_many([key]) == [b"value"]
        assert await backend.delete([key]) == 1
    finally:
        await backend.close()


async def test_negatives_never_connect(negative: Target) -> None:
    backend = RedisBackend.from_url(negative.url(), settings(negative.ca))
    client = backend.client
    assert isinstance(client, PipelinedRedis)
    try:
        with server_commands(negative.port) as served:
            for _ in range(2):  # a second attempt verifies again, and fails again
                started = time.perf_counter()
                with pytest.raises(CacheBackendError) as raised:
                    await backend.set(f"tls:{uuid.uuid4().hex}", b"value", 30)
                assert time.perf_counter() - started < TIMEOUT
                assert raised.value.transient  # the breaker counts it; the service falls back
                error = verify_error(raised.value)
                assert error is not None, raised.value
                assert error.verify_code in negative.case.codes, error.verify_message
                assert negative.case.openssl in str(raised.value)
        assert client.connects == 2
    finally:
        await backend.close()
    assert served == {}  # not one command reached the server


@pytest.mark.parametrize("switch", ["REDIS_TLS_INSECURE", "ssl_cert_reqs=none"])
async def test_insecure_connects_where_verification_refuses(negative: Target,
                                                            switch: str) -> None:
    """The negative servers are up and speak TLS: only the certificate checks refuse them."""
    if switch == "REDIS_TLS_INSECURE":
        backend = RedisBackend.from_url(negative.url(), settings(negative.ca, tls_insecure=True))
    else:
        backend = RedisBackend.from_url(f"{negative.url()}?ssl_cert_reqs=none",
                                        settings(negative.ca))
    try:
        with server_commands(negative.port) as served:
            assert await backend.ping() > 0
    finally:
        await backend.close()
    # The PING, after the restart check every new connection starts with (INFO, one script).
    assert served["cmdstat_ping"] == 1
    assert set(served) <= {"cmdstat_ping", "cmdstat_info", "cmdstat_eval", "cmdstat_get",
                           "cmdstat_set", "cmdstat_publish"}


# -- verification is never silently off -------------------------------------------------------

def test_default_context_verifies(tls_files: Path) -> None:
    for cache_settings in (CacheSettings(), CacheSettings.from_env({}),
                           CacheSettings(tls_ca_certs=str(tls_files / "ca.crt"))):
        context = ssl_context_for(cache_settings)
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname


@pytest.mark.parametrize(("env", "query", "off_by"), [
    ({}, "", None),
    ({"REDIS_TLS_INSECURE": "false"}, "", None),
    ({"REDIS_TLS_INSECURE": "0"}, "", None),
    ({}, "?ssl_cert_reqs=required", None),
    ({}, "?ssl_cert_reqs=optional", None),
    ({}, "?ssl_ca_certs=CA", None),
    ({"REDIS_TLS_CA_CERTS": "CA"}, "", None),
    ({"REDIS_TLS_INSECURE": "true"}, "", "REDIS_TLS_INSECURE"),
    ({"REDIS_TLS_INSECURE": "yes"}, "?ssl_cert_reqs=required", "REDIS_TLS_INSECURE"),
    ({}, "?ssl_cert_reqs=none", "ssl_cert_reqs=none in the URL"),
    ({}, "?ssl_cert_reqs=NONE", "ssl_cert_reqs=none in the URL"),
])
def test_only_the_insecure_settings_turn_verification_off(
        tls_files: Path, caplog: pytest.LogCaptureFixture, env: dict[str, str], query: str,
        off_by: str | None) -> None:
    ca = str(tls_files / "ca.crt")
    env = {name: value.replace("CA", ca) for name, value in env.items()}
    caplog.set_level(logging.WARNING, logger="middleware.backends.redis")
    backend = RedisBackend.from_url(
        f"rediss://:secret-pw@127.0.0.1:6390/0{query.replace('CA', ca)}",
        CacheSettings.from_env(env))
    client = backend.client
    assert isinstance(client, PipelinedRedis) and client.ssl_context is not None
    context = client.ssl_context
    warnings = [record for record in caplog.records if INSECURE_WARNING in record.getMessage()]
    if off_by is None:
        assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
        assert warnings == []
    else:
        assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)
        (warning,) = warnings
        assert warning.levelno == logging.WARNING
        assert f"OFF ({off_by}) for rediss://:***@127.0.0.1:6390/0" in warning.getMessage()
        assert "secret-pw" not in warning.getMessage()


def test_insecure_setting_on_a_plain_url_warns_of_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="middleware.backends.redis")
    backend = RedisBackend.from_url("redis://127.0.0.1:6390/0",
                                    CacheSettings.from_env({"REDIS_TLS_INSECURE": "true"}))
    assert isinstance(backend.client, PipelinedRedis) and backend.client.ssl_context is None
    assert not [r for r in caplog.records if INSECURE_WARNING in r.getMessage()]


# -- the whole service over HTTP ---------------------------------------------------------------

class RecordingRelay:
    """A loopback TCP relay to ``127.0.0.1:target`` that keeps each connection's first bytes:
    whatever the service sends to the configured host and port goes through it."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.first_bytes: list[bytearray] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def first_sent(self) -> list[bytearray]:
        """The first bytes of each connection that sent any: on a loaded machine the service
        can give up on a connection (its connect timeout) before its first byte."""
        return [first for first in self.first_bytes if first]

    async def __aenter__(self) -> RecordingRelay:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _relay(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        first = bytearray()
        self.first_bytes.append(first)
        self._writers.append(client_writer)
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1",
                                                                         self.target)
        except OSError:
            client_writer.close()
            return
        self._writers.append(server_writer)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       record: bytearray | None) -> None:
            try:
                while data := await reader.read(65536):
                    if record is not None and len(record) < 16:
                        record += data[:16 - len(record)]
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()

        await asyncio.gather(pipe(client_reader, server_writer, first),
                             pipe(server_reader, client_writer, None))


@asynccontextmanager
async def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str,
                  ca: str) -> AsyncIterator[tuple[Client, Any, Statements]]:
    monkeypatch.setenv("REDIS_TLS_CA_CERTS", ca)
    monkeypatch.setenv("CACHE_NAMESPACE", f"tls{uuid.uuid4().hex[:12]}")
    # The first failure opens the breaker, which stays open for the whole test.
    monkeypatch.setenv("CACHE_BREAKER_FAILURES", "1")
    monkeypatch.setenv("CACHE_BREAKER_RESET_SECONDS", "600")
    app = create_app(Settings(database_url=f"sqlite://{tmp_path}/tls.sqlite3",
                              redis_url=redis_url,
                              secret_key="test-secret-key-0123456789abcdef"))
    statements = Statements()
    async with running(app) as client:
        statements.install()
        yield client, app, statements


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records)


async def test_service_uses_redis_with_the_right_certificate(
        tls_files: Path, tls_redis: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The positive control for the service, through the same relay as the negatives."""
    caplog.set_level(logging.INFO)
    with server_commands(tls_redis) as served:
        async with RecordingRelay(tls_redis) as relay:
            url = f"rediss://localhost:{relay.port}/0"
            async with service(tmp_path, monkeypatch, url, str(tls_files / "ca.crt")) as (
                    client, app, statements):
                first = await client.get("/api/posts")
                before = statements.count
                second = await client.get("/api/posts")
                health = (await client.get("/health/cache")).json
    assert (first.status, first.headers["x-cache"]) == (200, "MISS")
    assert (second.status, second.headers["x-cache"]) == (200, "HIT")
    assert statements.count == before
    assert (health["backend"], health["configured_backend"]) == ("redis", "redis")
    assert health["status"] == "healthy"
    assert served.get("cmdstat_set", 0) >= 1 and served.get("cmdstat_mget", 0) >= 2
    assert relay.first_sent and all(b.startswith(TLS_HANDSHAKE_RECORD)
                                    for b in relay.first_sent)
    text = log_text(caplog)
    assert f"Redis cache connected (TLS): {url}" in text
    assert INSECURE_WARNING not in text


async def test_service_serves_from_memory_when_the_certificate_is_refused(
        negative: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with server_commands(negative.port) as served:
        async with RecordingRelay(negative.port) as relay:
            url = negative.url(relay.port)
            async with service(tmp_path, monkeypatch, url, negative.ca) as (
                    client, app, statements):
                # The start-up check found Redis unusable and opened the breaker, so no
                # request tries it (each would wait out the handshake): the memory tier
                # serves at once, a miss that stores and then hits that skip the database.
                responses = [await client.get("/api/posts") for _ in range(3)]
                before = statements.count
                hit = await client.get("/api/posts")
                health = (await client.get("/health/cache")).json
                stats = app.ctx.cache.stats()
    # Every connection to the configured address was a TLS handshake, none plain text, and
    # none got as far as a command.
    assert relay.first_sent
    assert all(b.startswith(TLS_HANDSHAKE_RECORD) for b in relay.first_sent), relay.first_bytes
    assert served == {}
    assert [r.status for r in responses] == [200, 200, 200]
    assert [r.headers["x-cache"] for r in responses] == ["MISS", "HIT", "HIT"]
    assert (hit.status, hit.headers["x-cache"]) == (200, "HIT")
    assert statements.count == before
    assert hit.json == responses[0].json
    assert (health["backend"], health["configured_backend"]) == ("memory", "redis")
    assert health["status"] == "degraded"
    assert negative.case.openssl in str(health)
    assert stats["redis_available"] is False
    text = log_text(caplog)
    assert "Redis unavailable, using in-memory cache until it answers" in text
    assert negative.case.openssl in text
    assert INSECURE_WARNING not in text


async def test_service_warns_at_start_up_when_verification_is_off(
        tls_files: Path, tls_redis_wrong_host: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("REDIS_TLS_INSECURE", "true")
    caplog.set_level(logging.INFO)
    url = f"rediss://localhost:{tls_redis_wrong_host}/0"
    async with service(tmp_path, monkeypatch, url, str(tls_files / "ca.crt")) as (client, _, _):
        startup = log_text(caplog)
        health = (await client.get("/health/cache")).json
    assert f"WARNING middleware.backends.redis: {INSECURE_WARNING} (REDIS_TLS_INSECURE) " \
           f"for {url}" in startup
    assert startup.index(INSECURE_WARNING) < startup.index("Redis cache connected (TLS)")
    assert health["backend"] == "redis"


# -- the connection checker ---------------------------------------------------------------------

def run_checker(url: str, ca: str | None) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("REDIS_", "CACHE_"))}
    env.update(REDIS_CONNECT_TIMEOUT=str(TIMEOUT), REDIS_SOCKET_TIMEOUT=str(TIMEOUT))
    return subprocess.run([sys.executable, "test_redis_connection.py", "--url", url,
                           *(["--ca-certs", ca] if ca else [])], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def tls_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("TLS "))


def test_checker_connects_with_the_right_certificate(tls_files: Path, tls_redis: int) -> None:
    done = run_checker(f"rediss://localhost:{tls_redis}/0", str(tls_files / "ca.crt"))
    assert (done.returncode, done.stderr) == (0, "")
    assert tls_line(done.stdout).endswith(
        f"certificate verified against {tls_files / 'ca.crt'}, hostname checked)")
    assert done.stdout.splitlines()[-1] == "OK"


def test_checker_reports_the_urls_own_tls_options(tls_files: Path, tls_redis: int,
                                                  tls_redis_expired: int) -> None:
    """What the client does, not what the settings say: the URL's ``ssl_ca_certs`` and
    ``ssl_cert_reqs=none`` override them, and the TLS line says so."""
    ca = tls_files / "ca.crt"
    done = run_checker(f"rediss://localhost:{tls_redis}/0?ssl_ca_certs={ca}", None)
    assert done.returncode == 0, done.stderr
    assert tls_line(done.stdout).endswith(f"certificate verified against {ca}, hostname checked)")
    done = run_checker(f"rediss://localhost:{tls_redis_expired}/0?ssl_cert_reqs=none", str(ca))
    assert done.returncode == 0, done.stderr
    assert tls_line(done.stdout).endswith(
        "certificate NOT verified: the URL says ssl_cert_reqs=none)")
    assert f"{INSECURE_WARNING} (ssl_cert_reqs=none in the URL)" in done.stderr


def test_checker_names_the_cause(negative: Target) -> None:
    done = run_checker(negative.url(), negative.ca)
    assert done.returncode == checker.EXIT_TLS
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(
        f"FAIL (TLS): certificate verify failed, {negative.case.cause}: "), done.stderr
    assert negative.case.openssl in done.stderr or negative.case.cause == "unknown CA"
    assert "OK" not in done.stdout.splitlines() and "PING" not in done.stdout
