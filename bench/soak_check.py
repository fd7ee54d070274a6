"""The soak's pure logic: resource snapshots compared with their baseline, error lines of
``lua/soak.lua`` split by restart window, and what the probes saw during a restart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class Snapshot:
    """The service's resources at one moment (``None``: could not be read, e.g. server down)."""

    label: str
    t: float
    rss_bytes: int
    fds: int
    processes: int
    pg_connections: int | None
    redis_clients: int | None

    @property
    def rss_mib(self) -> float:
        return round(self.rss_bytes / MIB, 1)


@dataclass(frozen=True)
class Tolerance:
    """How far from the baseline each resource may end after the load stops and settles.

    - RSS: up to ``rss_mib`` MiB or ``rss_fraction`` of the baseline above it, whichever is
      larger (allocator arenas and caches bounded by their own caps grow a little; a leak of
      per-request or per-reconnect objects over minutes of load does not stay that small).
    - File descriptors: within ``fds`` either way.  Each worker holds its listening socket,
      its Redis connection and its database pool; the pool opens connections on demand, so
      at a given moment it may hold one more or fewer than at the baseline (one fd each).  A
      leaked socket per reconnect or per request would be far above that.
    - PostgreSQL connections (``pg_stat_activity`` for the database): within ``pg`` either way,
      for the same reason.
    - Redis clients (``INFO clients``, the bench's own connection not counted): equal: each
      worker keeps exactly one pipelined connection and must replace, not add, it after a
      Redis restart.
    """

    rss_mib: float = 30.0
    rss_fraction: float = 0.20
    fds: int = 4
    pg: int = 2
    redis: int = 0


@dataclass(frozen=True)
class Check:
    name: str
    baseline: float | None
    final: float | None
    allowed: str
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "baseline": self.baseline, "final": self.final,
                "allowed": self.allowed, "ok": self.ok}


def _within(name: str, base: int | None, final: int | None, delta: int) -> Check:
    if base is None or final is None:
        return Check(name, base, final, f"±{delta}", False)
    return Check(name, base, final, f"{base - delta}..{base + delta}", abs(final - base) <= delta)


def compare(baseline: Snapshot, final: Snapshot, tolerance: Tolerance = Tolerance()) -> list[Check]:
    """Each resource of ``final`` against ``baseline`` under ``tolerance``."""
    base_mib, final_mib = baseline.rss_bytes / MIB, final.rss_bytes / MIB
    headroom = max(tolerance.rss_mib, tolerance.rss_fraction * base_mib)
    rss = Check("service RSS (MiB)", round(base_mib, 1), round(final_mib, 1),
                f"<= {base_mib + headroom:.1f}", final_mib <= base_mib + headroom)
    return [
        rss,
        _within("service open fds", baseline.fds, final.fds, tolerance.fds),
        _within("PostgreSQL connections", baseline.pg_connections, final.pg_connections,
                tolerance.pg),
        _within("Redis clients", baseline.redis_clients, final.redis_clients, tolerance.redis),
    ]


@dataclass(frozen=True)
class ErrorLine:
    """A non-2xx response ``lua/soak.lua`` logged: ``E status t_send_us t_recv_us METHOD PATH``."""

    status: int
    sent_us: int
    received_us: int
    request: str


def parse_errors(lines: Iterable[str]) -> list[ErrorLine]:
    out: list[ErrorLine] = []
    for line in lines:
        parts = line.rstrip("\n").split(" ", 4)
        if len(parts) >= 4 and parts[0] == "E" and all(p.isdigit() for p in parts[1:4]):
            out.append(ErrorLine(int(parts[1]), int(parts[2]), int(parts[3]),
                                 parts[4] if len(parts) > 4 else ""))
    return out


def split_by_window(errors: Iterable[ErrorLine],
                    windows: Mapping[str, tuple[float, float]]) -> dict[str, Counter[int]]:
    """Status counts of the errors in flight during each named window (sent before its end
    and answered after its start; seconds, monotonic clock) and of the others
    (``"outside"``): a request sent just before a restart began and answered by it belongs to
    the restart."""
    out: dict[str, Counter[int]] = {name: Counter() for name in windows}
    out["outside"] = Counter()
    for error in errors:
        sent, received = error.sent_us / 1e6, error.received_us / 1e6
        for name, (start, end) in windows.items():
            if sent <= end and received >= start:
                out[name][error.status] += 1
                break
        else:
            out["outside"][error.status] += 1
    return out


def count_5xx(counts: Mapping[int, int]) -> int:
    return sum(n for status, n in counts.items() if status >= 500)


@dataclass(frozen=True)
class Probe:
    """One request of the restart prober: what it sent, when, and what it got back."""

    kind: str
    sent: float
    seconds: float
    status: int
    body: str
    error: str = ""


def first_success_after(probes: Sequence[Probe], kind: str, after: float) -> float | None:
    """When the first 2xx ``kind`` probe sent at or after ``after`` was sent."""
    times = [p.sent for p in probes if p.kind == kind and p.sent >= after and 200 <= p.status < 300]
    return min(times, default=None)


def probe_answers(probes: Sequence[Probe], start: float, end: float) -> dict[str, dict[str, int]]:
    """Per probe kind, how often each answer (``status body`` or the client error) came back
    for probes sent in ``[start, end]``."""
    out: dict[str, Counter[str]] = {}
    for probe in probes:
        if start <= probe.sent <= end:
            answer = f"{probe.status} {probe.body}" if probe.status else f"error: {probe.error}"
            out.setdefault(probe.kind, Counter())[answer] += 1
    return {kind: dict(counter.most_common()) for kind, counter in out.items()}


def outage(probes: Sequence[Probe], kind: str, start: float) -> tuple[float, float] | None:
    """First and last send time (relative to ``start``) of ``kind`` probes that failed (non-2xx
    or a client error) from ``start`` on; None when none failed."""
    failed = [p.sent - start for p in probes
              if p.kind == kind and p.sent >= start and not 200 <= p.status < 300]
    return (min(failed), max(failed)) if failed else None
