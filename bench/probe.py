"""How long a write on one instance takes to show on another: the invalidation delay probe.

While both instances carry the mixed load, the probe repeatedly PATCHes one post of its own on
instance A (a ``[bench:probe=<id>:v=<n>]`` tag the wrk scripts do not look for) and, as soon as
A acknowledged the write, GETs the same post on instance B back to back on one keep-alive
connection until B shows the new version.  Before each write it reads the post once on B, so
the entry is in B's hot tier and the write has something to invalidate.

Per write it keeps the acknowledgement time and every read of B after it (sent, received, new
or old), all from ``time.monotonic`` in this one process:

- the *delay* is from the acknowledgement to the end of the first read on B that showed the new
  version: an upper bound on how long B served the old one (it includes that read's own round
  trip, about a millisecond under load);
- the *send delay* is from the acknowledgement to the *sending* of that read: when the very
  first read after the acknowledgement already shows the write (``old_reads_after_ack`` 0),
  B never served the old version after the acknowledgement, and the delay above is only the
  time B took to answer that read (on B a miss: the write cleared its entry);
- a *late old read* is a read on B sent more than ``late_ms`` after the acknowledgement that
  still showed the old version: the coherence bound says there are none.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.client import Client
from bench.workloads import WritablePost

log = logging.getLogger(__name__)

LATE_MS = 5.0
"""A read sent this long after the acknowledgement must show the write."""

POLL_TIMEOUT_S = 2.0
"""Give up on one write when B still shows the old version after this long."""


@dataclass(frozen=True)
class ProbeRead:
    """One read of the probe post on B after a write: seconds since the acknowledgement."""

    sent_s: float
    received_s: float
    new: bool


@dataclass
class ProbeWrite:
    """One write on A and the reads of B that followed it until B showed it."""

    version: int
    reads: list[ProbeRead] = field(default_factory=list)
    warm_x_cache: str = ""
    """``X-Cache`` of the read of B just before the write (HIT: B's tier held the entry)."""

    @property
    def delay_ms(self) -> float | None:
        """Acknowledgement to the end of the first read showing the write (None: never seen)."""
        for read in self.reads:
            if read.new:
                return 1000 * read.received_s
        return None

    @property
    def sent_delay_ms(self) -> float | None:
        """Acknowledgement to the sending of the first read showing the write."""
        for read in self.reads:
            if read.new:
                return 1000 * read.sent_s
        return None

    def old_reads(self, after_ms: float = 0.0) -> int:
        """Reads sent more than ``after_ms`` after the acknowledgement that showed the old one."""
        return sum(1 for r in self.reads if not r.new and 1000 * r.sent_s > after_ms)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100), at least the first
    return float(ordered[int(rank) - 1])


def summarise(writes: Sequence[ProbeWrite], *, late_ms: float = LATE_MS) -> dict[str, Any]:
    """Delays (ms) as p50/p99/max over the writes, and the reads that came too late."""
    delays = [d for w in writes if (d := w.delay_ms) is not None]
    sent = [d for w in writes if (d := w.sent_delay_ms) is not None]
    out: dict[str, Any] = {
        "writes": len(writes), "seen": len(delays), "never_seen": len(writes) - len(delays),
        "reads": sum(len(w.reads) for w in writes),
        "old_reads_after_ack": sum(w.old_reads() for w in writes),
        "late_old_reads": sum(w.old_reads(late_ms) for w in writes), "late_ms": late_ms,
        "warm_hits": sum(1 for w in writes if w.warm_x_cache == "HIT"),
        "delays_ms": [round(d, 3) for d in delays], "sent_delays_ms": [round(d, 3) for d in sent]}
    out.update(_percentiles(delays), **_percentiles(sent, "sent_"))
    return out


def _percentiles(values: Sequence[float], prefix: str = "") -> dict[str, float]:
    if not values:
        return {}
    return {f"{prefix}p50_ms": percentile(values, 50), f"{prefix}p99_ms": percentile(values, 99),
            f"{prefix}max_ms": max(values)}


def merge(summaries: Sequence[dict[str, Any]], *, late_ms: float = LATE_MS) -> dict[str, Any]:
    """Several rounds' ``summarise`` results as one (percentiles over every delay)."""
    counted = ("writes", "seen", "never_seen", "reads", "old_reads_after_ack", "late_old_reads",
               "warm_hits")
    out: dict[str, Any] = {k: sum(s.get(k, 0) for s in summaries) for k in counted}
    out["late_ms"] = late_ms
    out.update(_percentiles([d for s in summaries for d in s.get("delays_ms", [])]))
    out.update(_percentiles([d for s in summaries for d in s.get("sent_delays_ms", [])],
                            "sent_"))
    return out


def tag(post_id: int, version: int) -> str:
    return f"[bench:probe={post_id}:v={version}]"


def run(writer_url: str, reader_url: str, post: WritablePost, *, writes: int,
        deadline: float, pause_s: float = 0.005,
        clock: Callable[[], float] = time.monotonic) -> list[ProbeWrite]:
    """PATCH ``post`` on the writer, poll the reader until it shows it; ``writes`` times at most,
    stopping at ``deadline`` (a ``clock`` value)."""
    path = f"/api/posts/{post.id}"
    headers = {"Authorization": f"Bearer {post.token}"}
    out: list[ProbeWrite] = []
    base = int(clock() * 1000)  # versions above any earlier run's
    with Client(writer_url, timeout=10) as a, Client(reader_url, timeout=10) as b:
        for n in range(writes):
            if clock() >= deadline:
                break
            version = base + n
            warm = b.get(path)
            reply = a.request("PATCH", path, headers=headers,
                              body={"content": f"{tag(post.id, version)} set by the probe"})
            acked = clock()
            if reply.status != 200:
                raise RuntimeError(f"probe PATCH {path}: {reply.status} {reply.body[:200]!r}")
            write = ProbeWrite(version, warm_x_cache=warm.x_cache)
            marker = tag(post.id, version).encode()
            while True:
                sent = clock()
                seen = b.get(path)
                received = clock()
                new = marker in seen.body
                write.reads.append(ProbeRead(sent - acked, received - acked, new))
                if new or received - acked > POLL_TIMEOUT_S:
                    break
            out.append(write)
            time.sleep(pause_s)
    return out
