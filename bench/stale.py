"""Stale-read verification of the mixed workload.

``lua/mixed.lua`` logs, per wrk thread, every acknowledged write of a post
(``A id version t_send t_ack``) and every version of a written post a read response showed
(``S id version t_send``), with times from one monotonic clock.  A post is written by one thread
only, one request at a time, so its versions are acknowledged in increasing order.  A read is
stale when it shows a version older than the last write acknowledged *before the read was sent*;
a read that overlapped a write may show either version.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class StaleRead:
    """A read that showed ``seen`` although ``expected`` had been acknowledged before it."""

    post_id: int
    seen: int
    expected: int
    sent_us: int


@dataclass
class StaleReport:
    """The outcome of checking every logged read of a written post."""

    writes_acknowledged: int = 0
    reads_checked: int = 0
    stale: list[StaleRead] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.stale

    def as_dict(self) -> dict[str, object]:
        return {"writes_acknowledged": self.writes_acknowledged,
                "reads_checked": self.reads_checked, "stale_reads": len(self.stale),
                "examples": [vars(s) for s in self.stale[:10]]}


@dataclass
class _Acks:
    times: list[int] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)


def parse_lines(lines: Iterable[str]) -> tuple[list[tuple[int, int, int]],
                                               list[tuple[int, int, int]]]:
    """Split log lines into acks ``(id, version, t_ack)`` and reads ``(id, version, t_send)``."""
    acks: list[tuple[int, int, int]] = []
    reads: list[tuple[int, int, int]] = []
    for line in lines:
        parts = line.split()
        if len(parts) == 5 and parts[0] == "A":
            acks.append((int(parts[1]), int(parts[2]), int(parts[4])))
        elif len(parts) == 4 and parts[0] == "S":
            reads.append((int(parts[1]), int(parts[2]), int(parts[3])))
    return acks, reads


def check(acks: Iterable[tuple[int, int, int]], reads: Iterable[tuple[int, int, int]],
          base_versions: Mapping[int, int] | None = None) -> StaleReport:
    """Check every read against the last write of its post acknowledged before it was sent.

    ``base_versions`` are versions acknowledged before the load started (the bench sets each
    written post to a known version first): any read older than those is stale too.
    """
    report = StaleReport()
    per_post: dict[int, _Acks] = {}
    for post_id, version, t_ack in sorted(acks, key=lambda a: a[2]):
        entry = per_post.setdefault(post_id, _Acks())
        entry.times.append(t_ack)
        entry.versions.append(version)
        report.writes_acknowledged += 1
    base = dict(base_versions or {})
    for post_id, seen, t_send in reads:
        report.reads_checked += 1
        expected = base.get(post_id, 0)
        entry = per_post.get(post_id)
        if entry is not None:
            i = bisect.bisect_left(entry.times, t_send)  # acks strictly before the send
            if i:
                expected = max(expected, entry.versions[i - 1])
        if seen < expected:
            report.stale.append(StaleRead(post_id, seen, expected, t_send))
    return report


def check_dir(log_dir: Path, base_versions: Mapping[int, int] | None = None) -> StaleReport:
    """Check the ``thread-*.log`` files that ``lua/mixed.lua`` wrote into ``log_dir``."""
    acks: list[tuple[int, int, int]] = []
    reads: list[tuple[int, int, int]] = []
    for path in sorted(log_dir.glob("thread-*.log")):
        with path.open() as lines:
            a, r = parse_lines(lines)
        acks.extend(a)
        reads.extend(r)
    return check(acks, reads, base_versions)
