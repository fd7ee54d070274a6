"""What the connections, login-burst and soak benches read from the system, and how they start
the service: open-file limits, kernel listen-queue settings and counters, RSS sampled over time,
and the results files they write.
"""

from __future__ import annotations

import json
import logging
import re
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.configs import ROOT, Config, service_env
from bench.procs import Server, free_port

log = logging.getLogger(__name__)

RESULTS = ROOT / "bench" / "results"
MIB = 1024 * 1024
NOFILE_TARGET = 65_536
"""Open files each process the benches start may have (capped by the hard limit)."""


def nofile_limits() -> tuple[int, int]:
    """This process's (soft, hard) open-file limits (``ulimit -n`` / ``ulimit -Hn``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return int(soft), int(hard)


def raise_nofile(target: int = NOFILE_TARGET) -> Callable[[], None]:
    """A ``preexec_fn`` raising the child's soft open-file limit to ``target`` (or the hard one).

    1,000 client connections need 1,000+ descriptors in wrk and in the server: a soft limit of
    1,024 (a common default) would turn the test into a test of the limit."""

    def preexec() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = target if hard == resource.RLIM_INFINITY else min(target, hard)
        if wanted > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

    return preexec


def child_nofile(preexec: Callable[[], None]) -> int:
    """The soft open-file limit a child started with ``preexec`` gets (read back in a shell)."""
    out = subprocess.run(["sh", "-c", "ulimit -n"],  # noqa: S603,S607 - a fixed argv
                         capture_output=True, text=True, preexec_fn=preexec,
                         check=True).stdout.strip()
    return int(out) if out.isdigit() else -1


def sysctl(name: str) -> int | None:
    """A numeric kernel setting (``net.core.somaxconn``) from /proc/sys, None if unreadable."""
    try:
        return int(Path("/proc/sys", *name.split(".")).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def kernel_settings() -> dict[str, int | None]:
    """The settings that cap a listen queue and what a burst of SYNs meets."""
    return {name: sysctl(name) for name in (
        "net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_syncookies",
        "net.ipv4.tcp_abort_on_overflow")}


def parse_netstat(text: str, section: str = "TcpExt") -> dict[str, int]:
    """``/proc/net/netstat``: a header line of names and a line of values per section."""
    lines = [line.split() for line in text.splitlines() if line.startswith(section + ":")]
    if len(lines) < 2:
        return {}
    names, values = lines[0][1:], lines[1][1:]
    return {name: int(value) for name, value in zip(names, values, strict=False)}


LISTEN_COUNTERS = ("ListenOverflows", "ListenDrops", "SyncookiesSent", "TCPReqQFullDrop",
                   "TCPSynRetrans", "TCPTimeouts")


def parse_softnet_drops(text: str) -> int:
    """Packets the kernel dropped because a CPU's input backlog was full (``netdev_max_backlog``),
    summed over CPUs: the second (hexadecimal) column of ``/proc/net/softnet_stat``."""
    return sum(int(line.split()[1], 16) for line in text.splitlines() if len(line.split()) > 1)


def listen_counters() -> dict[str, int]:
    """The kernel's (machine-wide) counters of connections a full listen queue refused, of SYN
    and other retransmission timeouts, and of packets dropped before TCP saw them."""
    try:
        counters = parse_netstat(Path("/proc/net/netstat").read_text())
    except OSError:
        return {}
    out = {k: counters[k] for k in LISTEN_COUNTERS if k in counters}
    try:
        out["SoftnetDrops"] = parse_softnet_drops(Path("/proc/net/softnet_stat").read_text())
    except (OSError, ValueError):
        pass
    return out


def counter_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}


def parse_ss_backlog(text: str, port: int) -> int | None:
    """The backlog of the socket listening on ``port`` from ``ss -ltnH`` output.

    For a listening socket ``ss`` shows the accept queue's limit as Send-Q (what ``listen()``
    asked for, capped by ``net.core.somaxconn``)."""
    for line in text.splitlines():
        fields = line.split()
        # State Recv-Q Send-Q Local:Port Peer:Port
        if len(fields) >= 4 and fields[0] == "LISTEN" and fields[3].endswith(f":{port}"):
            return int(fields[2])
    return None


def parse_ss_accept_queue(text: str, port: int) -> int | None:
    """Connections waiting in the accept queue of the socket listening on ``port`` (the
    ``Recv-Q`` of a LISTEN line of ``ss -ltnH``): established by the kernel, not yet taken by
    the server's ``accept()``."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == "LISTEN" and fields[3].endswith(f":{port}"):
            return int(fields[1])
    return None


class AcceptQueueSampler:
    """Samples a listening socket's accept queue every ``interval`` s in a thread."""

    def __init__(self, port: int, interval: float = 0.2) -> None:
        self.port = port
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="accept-queue", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["ss", "-ltnH"], capture_output=True,  # noqa: S603,S607
                                     text=True, timeout=5).stdout
            except (OSError, subprocess.TimeoutExpired):
                out = ""
            queued = parse_ss_accept_queue(out, self.port)
            if queued is not None:
                self.samples.append((time.monotonic(), queued))
            self._stop.wait(self.interval)

    def summary(self, start: float) -> dict[str, float]:
        """Largest queue seen, and when (s after ``start``) it was last non-empty."""
        busy = [t - start for t, n in self.samples if n > 0]
        return {"max": max((n for _, n in self.samples), default=0),
                "last_nonempty_s": round(max(busy), 1) if busy else 0.0,
                "nonempty_samples": len(busy), "samples": len(self.samples)}

    def __enter__(self) -> AcceptQueueSampler:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(5)


def listen_backlog(port: int) -> int | None:
    """The effective backlog of the listening socket on ``port``, as the kernel reports it."""
    try:
        out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True,  # noqa: S603,S607
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_ss_backlog(out, port)


def parse_ss_owners(text: str, port: int) -> dict[int, int]:
    """Established connections on local ``port`` per owning pid, from ``ss -tnpH state
    established`` (columns: Recv-Q Send-Q Local Peer users:(("name",pid=N,fd=M)))."""
    counts: dict[int, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[2].endswith(f":{port}"):
            for pid in set(re.findall(r"pid=(\d+)", line)):
                counts[int(pid)] = counts.get(int(pid), 0) + 1
    return counts


def connections_per_process(port: int) -> dict[int, int]:
    """Which process holds how many of the established connections to ``port`` right now."""
    try:
        out = subprocess.run(["ss", "-tnpH", "state", "established"],  # noqa: S603,S607
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_ss_owners(out, port)


class RssSampler:
    """Samples a server's summed RSS (all its processes) every ``interval`` s in a thread."""

    def __init__(self, server: Server, interval: float = 0.1) -> None:
        self.server = server
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.server.rss()))
            self._stop.wait(self.interval)

    def between(self, start: float | None = None, end: float | None = None) -> list[int]:
        return [v for t, v in self.samples
                if (start is None or t >= start) and (end is None or t <= end)]

    def peak(self, start: float | None = None, end: float | None = None) -> int:
        return max(self.between(start, end), default=0)

    def mean(self, start: float | None = None, end: float | None = None) -> float:
        values = self.between(start, end)
        return sum(values) / len(values) if values else 0.0

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(5)


def service(name: str, *, workers: int, database_url: str, redis_url: str | None,
            log_dir: Path, env: Mapping[str, str] | None = None,
            drop_env: Iterable[str] = ()) -> Server:
    """A not-yet-started ``python app.py`` with the Redis cache and its hot tier, the default
    (or the memory cache when ``redis_url`` is None), its open-file limit raised, ``env`` added
    to its environment."""
    cache = "redis-hot" if redis_url else "memory"
    port = free_port()
    full_env = service_env(Config(name, "service", workers, cache), port=port,
                           database_url=database_url, redis_url=redis_url)
    for key in drop_env:
        full_env.pop(key, None)
    full_env.update(env or {})
    return Server(name, [sys.executable, "app.py"], port=port, env=full_env, log_dir=log_dir,
                  cwd=ROOT, ready_path="/health", preexec_fn=raise_nofile())


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ``values`` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil
    return float(ordered[int(rank) - 1])


def write_results(name: str, markdown: str, payload: Mapping[str, Any],
                  out: Path = RESULTS) -> tuple[Path, Path]:
    """Write ``<out>/<name>.md`` and ``<name>.json``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"{name}.md", out / f"{name}.json"
    md.write_text(markdown)
    js.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    log.info("Wrote %s and %s", md, js)
    return md, js


def mib(value: float) -> float:
    return round(value / MIB, 1)
