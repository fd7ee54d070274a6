"""The connection checker (``test_redis_connection.py``) against throwaway Redis servers.

Each failure class gets the server that produces it: a ``--requirepass`` server, a closed port,
a port that accepts but never answers, and a TLS server whose certificate comes from a test CA
(``tests/tls_redis.py``: verified with the right CA, with an unrelated one, and not at all; the
other TLS negatives, a wrong host name and an expired certificate, are in ``test_tls.py``).
What the checker claims about the connection (one, carrying every concurrent command) is checked
against the server's own counters.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from pytest_redis import factories as redis_factories
from pytest_redis.executor import RedisExecutor

import test_redis_connection as checker
from tests.server import free_port
from tests.tls_redis import tls_files, tls_redis, tls_redis_wanting_client_certs

# The TLS fixtures, shared with test_tls (and imported from here by test_health_logs).
__all__ = ["tls_files", "tls_redis", "tls_redis_wanting_client_certs"]

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "checker-pw-8f3a1c"

redis_with_password = redis_factories.redis_proc(port=None, timeout=10, password=PASSWORD)

pytestmark = pytest.mark.redis


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = checker.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "REDIS_PRIVATE_URL", "REDIS_TLS_CA_CERTS", "REDIS_TLS_INSECURE",
                 "CACHE_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    # Generous limits: the machine is shared and busy; the timeout tests set their own.
    for name in ("REDIS_CONNECT_TIMEOUT", "REDIS_SOCKET_TIMEOUT"):
        monkeypatch.setenv(name, "15")


# -- plain TCP --------------------------------------------------------------------------------

def test_success_reports_every_check(redis_server: RedisExecutor) -> None:
    code, out, err = run("--url", f"redis://{redis_server.host}:{redis_server.port}/0",
                         "--concurrency", "12")
    assert (code, err) == (0, "")
    lines = {line.split(None, 1)[0]: line for line in out.splitlines()}
    assert "TLS        off (redis://)" in lines["TLS"]
    assert lines["PING"].startswith("PING       ") and " ms (median of 5" in lines["PING"]
    assert "SET/GET/DEL ok" in lines["round"]
    assert "12 concurrent PINGs on one connection: all ok" in lines["pipelining"]
    assert "1 connection opened" in lines["pipelining"]
    assert lines["server"].startswith("server     Redis ")
    assert out.splitlines()[-1] == "OK"


def test_concurrent_commands_share_one_connection(redis_server: RedisExecutor) -> None:
    # The server's counters, not the checker's word: one connection accepted for the whole
    # run, and every PING reached it (1 to connect, 5 for latency, 40 concurrent).
    with redis.Redis(host=redis_server.host, port=redis_server.port) as server:
        def counts() -> tuple[int, int]:
            stats, commands = server.info("stats"), server.info("commandstats")
            return (stats["total_connections_received"],
                    commands.get("cmdstat_ping", {}).get("calls", 0))

        connections, pings = counts()
        code, out, err = run("--url", f"redis://{redis_server.host}:{redis_server.port}/0",
                             "--concurrency", "40")
        assert (code, err) == (0, "")
        assert "40 concurrent PINGs on one connection: all ok" in out
        assert counts() == (connections + 1, pings + 1 + 5 + 40)
        # The throwaway key of the round trip is gone.
        assert not server.keys("rc:checker:*")


def test_password_in_url_works_and_is_never_printed(redis_with_password: RedisExecutor) -> None:
    url = f"redis://:{PASSWORD}@{redis_with_password.host}:{redis_with_password.port}/0"
    code, out, err = run("--url", url)
    assert code == 0, err
    assert PASSWORD not in out + err
    assert f"redis://:***@{redis_with_password.host}" in out


def test_wrong_password_is_an_auth_failure(redis_with_password: RedisExecutor) -> None:
    url = f"redis://:not-{PASSWORD}@{redis_with_password.host}:{redis_with_password.port}/0"
    code, out, err = run("--url", url)
    assert code == checker.EXIT_AUTH
    assert err.startswith("FAIL (auth): Redis rejected the credentials")
    assert err.count("\n") == 1
    assert PASSWORD not in out + err


@pytest.mark.parametrize("database", ["", "/3"])  # "/3": the server refuses SELECT, not AUTH
def test_missing_password_says_the_url_has_none(redis_with_password: RedisExecutor,
                                                database: str) -> None:
    code, _, err = run("--url", f"redis://{redis_with_password.host}:{redis_with_password.port}"
                                f"{database}")
    assert code == checker.EXIT_AUTH
    assert err.startswith("FAIL (auth): the server requires a password and the URL has none")


def test_password_for_a_server_without_one_is_an_auth_failure(
        redis_server: RedisExecutor) -> None:
    code, out, err = run("--url", f"redis://:{PASSWORD}@{redis_server.host}:{redis_server.port}")
    assert code == checker.EXIT_AUTH
    assert err.startswith("FAIL (auth): Redis rejected the credentials")
    assert "without any password configured" in err
    assert PASSWORD not in out + err


def test_database_the_server_does_not_have_is_a_bad_url(redis_server: RedisExecutor) -> None:
    code, _, err = run("--url", f"redis://{redis_server.host}:{redis_server.port}/99")
    assert code == checker.EXIT_CONFIG
    assert err.startswith("FAIL (bad URL): bad database number")
    assert "DB index is out of range" in err


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_closed_port_is_refused(host: str) -> None:
    code, _, err = run("--url", f"redis://{host}:{free_port()}/0")
    assert code == checker.EXIT_REFUSED
    assert err.startswith(f"FAIL (refused): nothing accepts connections at redis://{host}:")


def test_unknown_host_is_unreachable() -> None:
    code, _, err = run("--url", "redis://no-such-host.invalid:6379/0")  # RFC 6761: never exists
    assert code == checker.EXIT_REFUSED
    assert err.startswith("FAIL (unreachable): cannot resolve the host")


def test_silent_server_is_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel completes the TCP handshake for a listening socket nobody reads from.
    monkeypatch.setenv("REDIS_SOCKET_TIMEOUT", "0.3")
    monkeypatch.setenv("REDIS_CONNECT_TIMEOUT", "0.3")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        code, _, err = run("--url", f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
    assert code == checker.EXIT_TIMEOUT
    # The connection's first command (the cache's restart check, INFO) gets no answer.
    assert err.startswith("FAIL (timeout): no answer in time: Redis connect timed out "
                          "(limit 0.3 s)")


@pytest.mark.parametrize(("url", "reason"), [
    ("http://example.com:6379", "must start with redis://, rediss:// or unix://"),
    ("redis://:hunter2hunter2@example.com:99999/0", "Port out of range"),
    ("redis:///0", "no host"),
    ("redis://example.com:6379/cache", "database must be a number"),
    ("redis://example.com:6379/0?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
])
def test_bad_url(url: str, reason: str) -> None:
    code, out, err = run("--url", url)
    assert code == checker.EXIT_CONFIG
    assert reason in err
    assert "hunter2hunter2" not in out + err


def test_no_url_at_all() -> None:
    code, _, err = run()
    assert code == checker.EXIT_CONFIG
    assert "set REDIS_URL or pass --url" in err


def test_command_line_reads_redis_url_and_sets_the_exit_status(
        redis_server: RedisExecutor) -> None:
    env = {**os.environ, "REDIS_URL": f"redis://{redis_server.host}:{redis_server.port}/0"}
    env.pop("REDIS_PRIVATE_URL", None)
    ok = subprocess.run([sys.executable, "test_redis_connection.py"], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[-1] == "OK"
    refused = subprocess.run([sys.executable, "test_redis_connection.py", "--url",
                              f"redis://127.0.0.1:{free_port()}"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == checker.EXIT_REFUSED
    assert refused.stderr.startswith("FAIL (refused)")


# -- TLS ----------------------------------------------------------------------------------------

def test_tls_with_the_right_ca_is_verified(tls_files: Path, tls_redis: int) -> None:
    code, out, err = run("--url", f"rediss://127.0.0.1:{tls_redis}/0",
                         "--ca-certs", str(tls_files / "ca.crt"))
    assert (code, err) == (0, "")
    tls = next(line for line in out.splitlines() if line.startswith("TLS"))
    assert "on (TLSv1.3" in tls or "on (TLSv1.2" in tls
    assert f"certificate verified against {tls_files / 'ca.crt'}, hostname checked" in tls


def test_tls_with_a_wrong_ca_fails_verification(tls_files: Path, tls_redis: int) -> None:
    code, _, err = run("--url", f"rediss://localhost:{tls_redis}/0",
                       "--ca-certs", str(tls_files / "other-ca.crt"))
    assert code == checker.EXIT_TLS
    assert err.startswith("FAIL (TLS): certificate verify failed, unknown CA: ")
    assert "set REDIS_TLS_CA_CERTS to the CA that signed the server's certificate" in err
    assert err.count("\n") == 1


def test_tls_ca_from_the_environment(tls_files: Path, tls_redis: int,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"rediss://localhost:{tls_redis}")
    monkeypatch.setenv("REDIS_TLS_CA_CERTS", str(tls_files / "other-ca.crt"))
    assert run()[0] == checker.EXIT_TLS
    monkeypatch.setenv("REDIS_TLS_CA_CERTS", str(tls_files / "ca.crt"))
    assert run()[0] == 0


def test_ca_file_without_a_certificate_is_a_bad_setting(tmp_path: Path, tls_redis: int) -> None:
    not_a_ca = tmp_path / "ca.pem"
    not_a_ca.write_text("not a certificate\n")
    code, _, err = run("--url", f"rediss://localhost:{tls_redis}/0", "--ca-certs", str(not_a_ca))
    assert code == checker.EXIT_CONFIG
    assert err.startswith(f"FAIL (bad setting): REDIS_TLS_CA_CERTS '{not_a_ca}' is not a PEM")


def test_server_wanting_a_client_certificate_is_a_tls_failure(
        tls_files: Path, tls_redis_wanting_client_certs: int) -> None:
    # TLS 1.3: the handshake completes, the server then rejects the session with an alert on
    # the first command (the lost connection's cause). Now and then the server's reset
    # overtakes its alert and the reason is gone: then it is "connection".
    code, _, err = run("--url", f"rediss://localhost:{tls_redis_wanting_client_certs}/0",
                       "--ca-certs", str(tls_files / "ca.crt"))
    if "reset by peer" in err:
        assert code == checker.EXIT_REFUSED
        assert err.startswith("FAIL (connection): Connection to Redis lost")
    else:
        assert code == checker.EXIT_TLS
        assert err.startswith("FAIL (TLS): ") and "CERTIFICATE_REQUIRED" in err


def test_tls_insecure_connects_but_says_unverified(tls_files: Path, tls_redis: int) -> None:
    code, out, _ = run("--url", f"rediss://127.0.0.1:{tls_redis}/0",
                       "--ca-certs", str(tls_files / "other-ca.crt"), "--insecure")
    assert code == 0
    assert "certificate NOT verified" in out


def test_plain_client_on_a_tls_port_fails_with_a_reason(tls_redis: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SOCKET_TIMEOUT", "0.5")
    code, _, err = run("--url", f"redis://127.0.0.1:{tls_redis}/0")
    # The server resets the connection, or first sends a TLS alert (a protocol error here).
    assert code == checker.EXIT_REFUSED
    assert err.startswith("FAIL (connection): ")
    assert "a TLS-only server closes plain connections: try rediss://" in err


def test_tls_client_on_a_plain_port_fails_with_a_reason(redis_server: RedisExecutor,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # A plain Redis reads the TLS hello as an inline command and waits for its newline, which
    # it looks for with strchr(): the hello's header has a NUL byte, so it never answers.
    monkeypatch.setenv("REDIS_CONNECT_TIMEOUT", "0.5")
    code, _, err = run("--url", f"rediss://{redis_server.host}:{redis_server.port}/0")
    assert code == checker.EXIT_TIMEOUT
    assert err.startswith(
        "FAIL (timeout): no answer in time: Redis connect timed out (limit 0.5 s)")
    assert err.rstrip().endswith("(does this port speak TLS? check rediss:// vs redis:// and "
                                 "the port)")
