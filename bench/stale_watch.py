"""What the stale-windows bench watches from outside the service: every ``SET`` Redis receives
(``MONITOR``: which worker's connection stored which key, i.e. the refreshes) and each worker's
``/health/cache`` statistics.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from bench.client import Client
from bench.stale_windows_check import parse_monitor

log = logging.getLogger(__name__)


class SetWatcher:
    """``with SetWatcher(port, prefix) as watch:`` records ``(time, client, key)`` of every
    ``SET`` of a key starting with ``prefix`` while the block runs.

    ``MONITOR`` costs Redis some CPU per command; the bench runs it during the whole load, so
    the latencies before and after the TTL pay the same."""

    def __init__(self, port: int, prefix: str) -> None:
        self.port = port
        self.prefix = prefix
        self.sets: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self._thread = threading.Thread(target=self._run, daemon=True, name="redis-monitor")

    def _run(self) -> None:
        sock, pending = self._sock, b""
        sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                chunk = sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                log.warning("MONITOR connection failed", exc_info=True)
                return
            if not chunk:
                return
            *lines, pending = (pending + chunk).split(b"\r\n")
            for raw in lines:
                if b'"SET"' not in raw[:80] and b'"set"' not in raw[:80]:
                    continue
                parsed = parse_monitor(raw[:2048].decode("latin-1"))
                if parsed and parsed[2] == "SET" and parsed[3].startswith(self.prefix):
                    self.sets.append((parsed[0], parsed[1], parsed[3]))

    def __enter__(self) -> SetWatcher:
        self._sock.sendall(b"MONITOR\r\n")
        if not self._sock.recv(16).startswith(b"+OK"):
            raise RuntimeError("redis-server refused MONITOR")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)  # the last commands' lines
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


def worker_stats(base_url: str, workers: int, attempts: int = 80) -> dict[str, dict[str, Any]]:
    """``/health/cache`` statistics of each worker process, keyed by pid.

    A connection is served by one worker: ``/health/detailed`` names it (``pid``), then
    ``/health/cache`` on the same connection gives its counters. New connections land on
    workers at random, so this retries until every worker was seen (or gives up)."""
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(attempts):
        with Client(base_url, timeout=15) as client:
            pid = str(client.get("/health/detailed").json().get("pid"))
            if pid in seen:
                continue
            seen[pid] = client.get("/health/cache").json()["stats"]
        if len(seen) >= workers:
            break
    if len(seen) < workers:
        log.warning("saw %d of %d workers' /health/cache", len(seen), workers)
    return seen


COUNTERS = ("hits", "misses", "stale", "stale_on_error", "refreshes", "refresh_failures",
            "stores")


def stats_delta(before: dict[str, dict[str, Any]],
                after: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per worker pid: how much each counter of ``COUNTERS`` grew."""
    return {pid: {name: int(stats.get(name, 0)) - int(before.get(pid, {}).get(name, 0))
                  for name in COUNTERS} for pid, stats in after.items()}
