"""``DATABASE_URL`` with libpq's ``sslmode`` against a real PostgreSQL that speaks TLS.

The shared cluster on 127.0.0.1:5432 runs with ``ssl = off``, so this module starts its own
with TLS on and a trustme CA: that also lets ``verify-ca`` / ``verify-full`` be tested
positively with ``sslrootcert``. The certificate names only ``127.0.0.1``, so connecting to
``localhost`` tells verify-full (host name checked) from verify-ca (not checked).

The cluster is started with pg_ctl here rather than pytest-postgresql's ``postgresql_proc``:
that runs initdb as the current user, which initdb refuses when it is root (as in our
containers); like ``scripts/test-services``, this runs it as the ``postgres`` user then.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import trustme
from tortoise import connections

from app import create_app
from settings import Settings, normalise_database_url
from tests.app_process import ROOT, clean_env
from tests.server import Client, free_port, running

pytestmark = pytest.mark.postgres

_PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), default=None,
              key=lambda path: int(path.parent.name))


@dataclass(frozen=True)
class TLSServer:
    port: int
    ca_file: Path

    def url(self, query: str, *, host: str = "127.0.0.1") -> str:
        return f"postgresql://postgres@{host}:{self.port}/postgres?{query}"


def _run(*command: str) -> None:
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        command = ("runuser", "-u", "postgres", "--", *command)
    subprocess.run(command, check=True, timeout=120, stdout=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TLSServer]:
    """A throwaway cluster with ``ssl = on`` and a certificate for 127.0.0.1 only."""
    if _PG_BIN is None:
        pytest.fail("PostgreSQL server binaries not found under /usr/lib/postgresql")
    directory = Path(tempfile.mkdtemp(prefix="test-pg-tls."))
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = (directory / name
                                    for name in ("server.crt", "server.key", "root.crt"))
    server_cert.cert_chain_pems[0].write_to_path(str(cert_file))
    server_cert.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)  # the server refuses a key others can read
    ca.cert_pem.write_to_path(str(ca_file))
    if os.geteuid() == 0:
        for path in (directory, cert_file, key_file):
            shutil.chown(path, "postgres")
    data, port = directory / "data", free_port()
    started = False
    try:
        _run(str(_PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
        options = (f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c ssl=on -c ssl_cert_file={cert_file} -c ssl_key_file={key_file}")
        _run(str(_PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"), "-w",
             "-o", options, "start")
        started = True
        yield TLSServer(port=port, ca_file=ca_file)
    finally:
        if started:
            _run(str(_PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(directory, ignore_errors=True)


@asynccontextmanager
async def service(database_url: str) -> AsyncIterator[Client]:
    """The whole service, built from ``DATABASE_URL`` as the environment would give it."""
    settings = Settings(database_url=normalise_database_url(database_url),
                        secret_key="test-secret-key-0123456789abcdef")
    async with running(create_app(settings)) as http:
        yield http


async def session_ssl() -> bool:
    """Whether the app's own Tortoise connection is encrypted, as the server sees it."""
    rows = await connections.get("default").execute_query_dict(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    return bool(rows[0]["ssl"])


@pytest.mark.parametrize("query", [
    "sslmode=require",
    "sslmode=require&channel_binding=require",  # as Neon hands it out
    "sslmode=verify-full&sslrootcert={ca}",
])
async def test_tls_modes_start_the_service_over_tls(tls_server: TLSServer, query: str) -> None:
    async with service(tls_server.url(query.format(ca=tls_server.ca_file))) as http:
        response = await http.get("/health/detailed")
        assert response.status == 200, response.text
        assert response.json["database"]["status"] == "ok"
        assert "sslmode" not in response.text
        assert await session_ssl() is True


async def test_disable_connects_in_plaintext(tls_server: TLSServer) -> None:
    async with service(tls_server.url("sslmode=disable")) as http:
        assert (await http.get("/health/detailed")).status == 200
        assert await session_ssl() is False


async def test_verify_full_without_a_trusted_root_fails_start_up(tls_server: TLSServer) -> None:
    # The trustme CA is not in the system store, which verify-full trusts without sslrootcert.
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        async with service(tls_server.url("sslmode=verify-full")):
            pass


async def test_verify_ca_does_not_check_the_host_name(tls_server: TLSServer) -> None:
    query = f"sslmode=verify-ca&sslrootcert={tls_server.ca_file}"
    async with service(tls_server.url(query, host="localhost")) as http:
        assert (await http.get("/health/detailed")).status == 200
        assert await session_ssl() is True


async def test_verify_full_checks_the_host_name(tls_server: TLSServer) -> None:
    query = f"sslmode=verify-full&sslrootcert={tls_server.ca_file}"
    with pytest.raises(ssl.SSLCertVerificationError, match="localhost"):
        async with service(tls_server.url(query, host="localhost")):
            pass


async def test_pool_and_statement_cache_options_reach_asyncpg(tls_server: TLSServer) -> None:
    """``statement_cache_size=0`` is what PgBouncer in transaction mode needs."""
    query = "sslmode=require&maxsize=3&minsize=2&statement_cache_size=0"
    async with service(tls_server.url(query)) as http:
        assert (await http.get("/health/detailed")).status == 200
        client = connections.get("default")
        pool = client._pool  # noqa: SLF001 - asyncpg's pool is what the options must reach
        assert (pool.get_min_size(), pool.get_max_size()) == (2, 3)
        async with client.acquire_connection() as conn:
            assert conn._config.statement_cache_size == 0  # noqa: SLF001
            assert conn._stmt_cache.get_max_size() == 0  # noqa: SLF001


async def test_percent_encoded_user_and_database_names_connect(tls_server: TLSServer) -> None:
    # Providers hand out names that must be encoded in a URL (Azure's "user@server"): libpq
    # decodes them, and so must the service.
    admin = await asyncpg.connect(host="127.0.0.1", port=tls_server.port, user="postgres",
                                  database="postgres", ssl=False)
    try:
        await admin.execute('CREATE ROLE "app@server" LOGIN SUPERUSER')
        await admin.execute('CREATE DATABASE "my db" OWNER "app@server"')
        url = (f"postgres://app%40server@127.0.0.1:{tls_server.port}/my%20db"
               "?sslmode=disable")
        async with service(url) as http:
            assert (await http.get("/health/detailed")).status == 200
            rows = await connections.get("default").execute_query_dict(
                "SELECT current_user AS who, current_database() AS db")
            assert rows == [{"who": "app@server", "db": "my db"}]
    finally:
        await admin.execute('DROP DATABASE IF EXISTS "my db" WITH (FORCE)')
        await admin.execute('DROP ROLE IF EXISTS "app@server"')
        await admin.close()


@pytest.mark.parametrize("query", ["sslmode=require", "sslmode=disable"])
def test_an_unreachable_database_stops_start_up_with_one_line(query: str) -> None:
    # Nothing listens on this port: as a mistyped host or port, or a server that is down.
    url = f"postgres://app:s3cret-pw@127.0.0.1:{free_port()}/appdb?{query}"
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60,
                            env=clean_env(DATABASE_URL=url, PORT="0", WORKERS="2",
                                          SECRET_KEY="test-secret-key-0123456789abcdef"))
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if "CRITICAL" in line]
    assert "Not starting: DATABASE_URL: cannot connect to PostgreSQL (127.0.0.1:" in line
    assert "Traceback" not in result.stderr and "s3cret-pw" not in result.stderr
