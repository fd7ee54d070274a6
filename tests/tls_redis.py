"""Throwaway redis-servers speaking only TLS, with certificates made by ``trustme``.

``tls_files`` writes, into one directory (PEM files):

- ``ca.crt``: the test CA; ``other-ca.crt``: an unrelated CA that signed nothing used here;
- ``server.crt``/``.key``: valid now, for ``localhost`` and ``127.0.0.1``, signed by the CA;
- ``expired.crt``/``.key``: the same names and CA, valid only in the past;
- ``wrong-host.crt``/``.key``: valid now, signed by the CA, for ``redis.example.test`` only.

A redis-server holds one certificate (no SNI), so each certificate gets its own server
(``tls_server``), bound to 127.0.0.1 on a free port, with no plain-TCP port at all. Import the
fixtures into a test module (and name them in its ``__all__``) to use them.
"""

from __future__ import annotations

import datetime
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme

from tests.server import free_port

__all__ = ["WRONG_HOST", "tls_files", "tls_redis", "tls_redis_expired",
           "tls_redis_wanting_client_certs", "tls_redis_wrong_host", "tls_server"]

WRONG_HOST = "redis.example.test"
"""The only name in ``wrong-host.crt`` (RFC 6761 ``.test``: never a real host)."""


def _write_leaf(directory: Path, name: str, leaf: trustme.LeafCert) -> None:
    leaf.private_key_pem.write_to_path(str(directory / f"{name}.key"))
    (directory / f"{name}.crt").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))


def make_tls_files(directory: Path) -> Path:
    """Write the CAs and server certificates listed in the module docstring into ``directory``."""
    ca, other_ca = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.crt"))
    other_ca.cert_pem.write_to_path(str(directory / "other-ca.crt"))
    _write_leaf(directory, "server", ca.issue_cert("localhost", "127.0.0.1"))
    now = datetime.datetime.now(datetime.timezone.utc)
    _write_leaf(directory, "expired", ca.issue_cert(
        "localhost", "127.0.0.1", not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1)))
    _write_leaf(directory, "wrong-host", ca.issue_cert(WRONG_HOST))
    return directory


@contextmanager
def tls_server(tls_files: Path, certificate: str = "server", *,
               auth_clients: str = "no") -> Iterator[int]:
    """A redis-server speaking only TLS with ``<certificate>.crt``/``.key``; yields its port.

    ``auth_clients``: redis' ``--tls-auth-clients`` (``yes`` wants a client certificate
    signed by ``ca.crt``). Its log goes to ``<certificate>-<port>.log`` in ``tls_files``.
    """
    port = free_port()
    logfile = tls_files / f"{certificate}-{port}.log"
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(tls_files / f"{certificate}.crt"),
         "--tls-key-file", str(tls_files / f"{certificate}.key"),
         "--tls-ca-cert-file", str(tls_files / "ca.crt"), "--tls-auth-clients", auth_clients,
         "--save", "", "--appendonly", "no", "--dir", str(tls_files),
         "--logfile", str(logfile)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                log = logfile.read_text() if logfile.exists() else ""
                pytest.fail(f"redis-server (TLS) exited with {proc.returncode}: {log}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "TLS redis-server did not start within 10 s"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The certificate directory (see the module docstring)."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_redis(tls_files: Path) -> Iterator[int]:
    """A TLS redis-server with the valid certificate; no client certificate needed."""
    with tls_server(tls_files) as port:
        yield port


@pytest.fixture(scope="module")
def tls_redis_wanting_client_certs(tls_files: Path) -> Iterator[int]:
    """A TLS redis-server that requires a client certificate signed by ``ca.crt``."""
    with tls_server(tls_files, auth_clients="yes") as port:
        yield port


@pytest.fixture(scope="module")
def tls_redis_expired(tls_files: Path) -> Iterator[int]:
    """A TLS redis-server presenting ``expired.crt``."""
    with tls_server(tls_files, "expired") as port:
        yield port


@pytest.fixture(scope="module")
def tls_redis_wrong_host(tls_files: Path) -> Iterator[int]:
    """A TLS redis-server presenting ``wrong-host.crt`` (for ``WRONG_HOST`` only)."""
    with tls_server(tls_files, "wrong-host") as port:
        yield port
