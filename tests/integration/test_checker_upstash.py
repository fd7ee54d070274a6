"""The connection checker against the Upstash REST stand-in (``tests/upstash_standin.py``) over a
real redis-server: success, and each failure named by its cause (wrong token, nothing
listening, a server that hangs, TLS with an unknown CA, TLS on a plain port)."""

from __future__ import annotations

import io
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_redis.executor import RedisExecutor

import test_redis_connection as checker
from tests.integration.test_checker import tls_files
from tests.server import free_port
from tests.upstash_standin import standin_in_thread

__all__ = ["tls_files"]

pytestmark = pytest.mark.redis

TOKEN = "checker-rest-token-77b2"
ROOT = Path(checker.__file__).resolve().parent


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = checker.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _redis(proc: RedisExecutor) -> str:
    return f"redis://{proc.host}:{proc.port}/0"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "REDIS_PRIVATE_URL", "REDIS_TLS_CA_CERTS", "REDIS_TLS_INSECURE",
                 "CACHE_NAMESPACE", "UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("REDIS_CONNECT_TIMEOUT", "REDIS_SOCKET_TIMEOUT"):
        monkeypatch.setenv(name, "15")


def test_rest_endpoint_from_the_environment_passes_every_check(
        redis_server: RedisExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    with standin_in_thread(_redis(redis_server), TOKEN) as standin:
        monkeypatch.setenv("UPSTASH_REDIS_REST_URL", standin.url)
        monkeypatch.setenv("UPSTASH_REDIS_REST_TOKEN", TOKEN)
        code, out, err = run("--concurrency", "8")
        requests = dict(standin.requests)
    assert (code, err) == (0, "")
    lines = {line.split(None, 1)[0]: line for line in out.splitlines()}
    assert lines["REST"] == f"REST URL   {standin.url}"
    assert "off (http://)" in lines["TLS"]
    assert "SET/GET/DEL of all 256 byte values ok" in lines["round"]
    assert "8 concurrent PINGs on the keep-alive client: all ok" in lines["keep-alive"]
    assert lines["server"].startswith("server     Redis 7")
    assert TOKEN not in out + err
    # PING 1 + 5 + 8, INFO 1 on "/", the round trip is one "/pipeline" request.
    assert requests == {"/": 15, "/pipeline": 1}


def test_wrong_token_is_an_auth_failure(redis_server: RedisExecutor) -> None:
    with standin_in_thread(_redis(redis_server), TOKEN) as standin:
        code, out, err = run("--rest-url", standin.url, "--rest-token", "wrong-token")
    assert code == checker.EXIT_AUTH
    assert err.startswith("FAIL (auth): the endpoint rejected the token (HTTP 401")
    assert "UPSTASH_REDIS_REST_TOKEN" in err and "wrong-token" not in out + err


def test_nothing_listening_is_refused() -> None:
    code, _, err = run("--rest-url", f"http://127.0.0.1:{free_port()}", "--rest-token", "t")
    assert code == checker.EXIT_REFUSED
    assert err.startswith("FAIL (refused): nothing accepts connections at http://127.0.0.1:")


def test_a_hanging_endpoint_is_a_timeout(redis_server: RedisExecutor,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SOCKET_TIMEOUT", "0.3")
    with standin_in_thread(_redis(redis_server), TOKEN) as standin:
        standin.fault = "hang"
        code, _, err = run("--rest-url", standin.url, "--rest-token", TOKEN)
    assert code == checker.EXIT_TIMEOUT
    assert err.startswith("FAIL (timeout): no answer in time")


def test_tls_with_an_unknown_ca_names_the_cause(redis_server: RedisExecutor,
                                                tls_files: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files / "server.crt", tls_files / "server.key")
    with standin_in_thread(_redis(redis_server), TOKEN, ssl_context=context) as standin:
        assert standin.url.startswith("https://")
        code, _, err = run("--rest-url", standin.url, "--rest-token", TOKEN)
        verified, out, _ = run("--rest-url", standin.url, "--rest-token", TOKEN,
                               "--ca-certs", str(tls_files / "ca.crt"))
    assert code == checker.EXIT_TLS
    assert err.startswith("FAIL (TLS): certificate verify failed, unknown CA")
    assert verified == 0
    assert f"on (certificate verified against {tls_files / 'ca.crt'}" in out


def test_https_to_a_plain_http_port_is_a_tls_failure(redis_server: RedisExecutor) -> None:
    with standin_in_thread(_redis(redis_server), TOKEN) as standin:
        url = standin.url.replace("http://", "https://")
        code, _, err = run("--rest-url", url, "--rest-token", TOKEN)
    assert code == checker.EXIT_TLS
    assert err.startswith("FAIL (TLS): handshake failed: WRONG_VERSION_NUMBER (does this port "
                          "speak TLS? check https:// vs http://")


def test_a_url_without_a_token_is_a_setting_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTASH_REDIS_REST_URL", "https://eu1-x.upstash.io")
    code, _, err = run()
    assert code == checker.EXIT_CONFIG
    assert "UPSTASH_REDIS_REST_TOKEN" in err


@pytest.mark.parametrize("command", [["test_redis_connection.py"], ["-m", "test_redis_connection"]],
                         ids=["script", "module"])
def test_the_command_line_names_a_rest_failure_and_sets_the_exit_status(
        command: list[str]) -> None:
    # Run as a script the checker is ``__main__``, and checker_rest imports it again as
    # ``test_redis_connection``: its failures must still be caught and named, not a traceback.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_", "UPSTASH_", "CACHE_"))}
    refused = subprocess.run([sys.executable, *command, "--rest-url",
                              f"http://127.0.0.1:{free_port()}", "--rest-token", "t"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == checker.EXIT_REFUSED, refused.stderr
    assert refused.stderr.startswith("FAIL (refused): nothing accepts connections"), \
        refused.stderr
