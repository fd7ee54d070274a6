"""A throwaway Redis Cluster of real redis-servers on loopback ports, for the cluster tests.

Not a test module. Three masters, no replicas: ``redis-server --cluster-enabled yes`` per node,
then ``redis-cli --cluster create``. Every server runs under ``timeout`` so that it stops by
itself even if the test process dies; ``stop`` kills what is left.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

__all__ = ["RedisClusterProcs"]

LIFETIME_SECONDS = 900
"""The longest a server of these tests may run."""


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """``count`` ports whose cluster bus port (+10000) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, 29999)
        if port not in ports and _bindable(port) and _bindable(port + 10000):
            ports.append(port)
    return ports


class RedisClusterProcs:
    """The servers of one test cluster, and what the tests do to it by hand."""

    def __init__(self, directory: Path, masters: int = 3, *, tls: Path | None = None) -> None:
        self.directory = directory
        self.tls = tls
        """A ``tests.tls_redis`` certificate directory: every node speaks TLS only (clients
        and the cluster bus), with ``server.crt`` (for 127.0.0.1) signed by ``ca.crt``."""
        self.ports = _free_ports(masters)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """A URL naming the first node (the cache discovers the rest)."""
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.ports[0]}"

    def _cli_tls(self) -> list[str]:
        return ["--tls", "--cacert", str(self.tls / "ca.crt")] if self.tls else []

    def start(self) -> RedisClusterProcs:
        for port in self.ports:
            self.start_node(port)
        subprocess.run(
            ["redis-cli", *self._cli_tls(), "--cluster", "create",
             *(f"127.0.0.1:{port}" for port in self.ports), "--cluster-yes"],
            check=True, capture_output=True, timeout=30)
        self.wait_ok()
        return self

    def start_node(self, port: int) -> None:
        listen = ["--port", str(port)]
        if self.tls:
            listen = ["--port", "0", "--tls-port", str(port), "--tls-cluster", "yes",
                      "--tls-cert-file", str(self.tls / "server.crt"),
                      "--tls-key-file", str(self.tls / "server.key"),
                      "--tls-ca-cert-file", str(self.tls / "ca.crt"),
                      "--tls-auth-clients", "no"]
        self.procs[port] = subprocess.Popen(
            ["timeout", str(LIFETIME_SECONDS), "redis-server", *listen,
             "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", str(self.directory / f"nodes-{port}.conf"),
             "--cluster-node-timeout", "1000", "--dir", str(self.directory),
             "--save", "", "--appendonly", "no", "--logfile", str(self.directory / f"{port}.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.node(port).ping():
                    return
            except redis.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"redis-server on {port} did not start"
            time.sleep(0.05)

    def add_replica(self, master: int) -> int:
        """Start a node and make it a replica of ``master``; its port, once in sync."""
        (port,) = _free_ports(1)
        self.start_node(port)
        subprocess.run(
            ["redis-cli", *self._cli_tls(), "--cluster", "add-node", f"127.0.0.1:{port}",
             f"127.0.0.1:{master}", "--cluster-slave", "--cluster-master-id", self.node_id(master)],
            check=True, capture_output=True, timeout=30)
        deadline = time.monotonic() + 20
        while self.node(port).info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, f"replica {port} never synced"
            time.sleep(0.05)
        return port

    def wait_ok(self, ports: list[int] | None = None, timeout: float = 20.0) -> None:
        """Until every node (of ``ports``) reports ``cluster_state:ok`` with all slots."""
        deadline = time.monotonic() + timeout
        for port in ports or self.ports:
            while True:
                info = self.node(port).cluster("INFO")
                if info["cluster_state"] == "ok" and int(info["cluster_slots_ok"]) == 16384:
                    break
                assert time.monotonic() < deadline, f"cluster not ok on {port}: {info}"
                time.sleep(0.05)

    def node(self, port: int) -> redis.Redis:
        tls: dict[str, Any] = {}
        if self.tls:
            tls = {"ssl": True, "ssl_ca_certs": str(self.tls / "ca.crt")}
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5,
                           socket_connect_timeout=2, **tls)

    def node_id(self, port: int) -> str:
        node_id = self.node(port).cluster("MYID")
        return node_id.decode() if isinstance(node_id, bytes) else str(node_id)

    def owner(self, slot: int) -> int:
        """The port of the master that serves ``slot``."""
        for start, end, master, *_ in self.node(self.ports[0]).execute_command(
                "CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(master[1])
        raise AssertionError(f"slot {slot} not served")

    def slot_of(self, key: str) -> int:
        return int(self.node(self.ports[0]).cluster("KEYSLOT", key))

    def keys_in_slot(self, port: int, slot: int) -> list[bytes]:
        return list(self.node(port).cluster("GETKEYSINSLOT", slot, 1000))

    def begin_migration(self, slot: int, source: int, target: int) -> None:
        """``CLUSTER SETSLOT`` IMPORTING on the target, MIGRATING on the source."""
        self.node(target).cluster("SETSLOT", slot, "IMPORTING", self.node_id(source))
        self.node(source).cluster("SETSLOT", slot, "MIGRATING", self.node_id(target))

    def migrate_keys(self, slot: int, source: int, target: int) -> int:
        """``MIGRATE`` the slot's keys still on the source; how many moved."""
        keys = self.keys_in_slot(source, slot)
        if keys:
            self.node(source).execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000,
                                              "KEYS", *keys)
        return len(keys)

    def end_migration(self, slot: int, source: int, target: int) -> None:
        """``CLUSTER SETSLOT ... NODE`` on the target, the source, then the others."""
        target_id = self.node_id(target)
        for port in [target, source, *(p for p in self.ports if p not in (source, target))]:
            self.node(port).cluster("SETSLOT", slot, "NODE", target_id)

    def kill(self, port: int) -> None:
        """SIGKILL the redis-server (not its ``timeout`` parent): no goodbye to anyone."""
        pid = int(self.node(port).info("server")["process_id"])
        os.kill(pid, signal.SIGKILL)
        self.procs[port].wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()  # ``timeout`` passes SIGTERM on to redis-server
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
