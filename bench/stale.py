"""Stale-read verification of the mixed workload.

``lua/mixed.lua`` logs, per wrk thread, every acknowledged write of a post
(``A id version t_send t_ack``) and every version of a written post a read response showed
(``S id version t_send``), with times from one monotonic clock.  A post is written by one thread
only, one request at a time, so its versions are acknowledged in increasing order.  A read is
stale when it shows a version older than the last write acknowledged *before the read was sent*;
a read that overlapped a write may show either version.

With several instances (``check_sources``) each wrk process logs into its own directory; every
wrk runs on this machine, and ``CLOCK_MONOTONIC`` is one clock for every process of a boot, so
the logs merge on one time line: a read on instance B is checked against the writes
acknowledged on instance A.  ``grace_us`` also counts the stale reads sent more than that long
after the acknowledgement they missed (``stale_beyond_grace``).
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
    source: str = ""
    """Which log (instance) the read came from, when several were checked together."""
    late: bool = False
    """Sent more than the grace period after the acknowledgement of ``expected``."""


@dataclass
class StaleReport:
    """The outcome of checking every logged read of a written post."""

    writes_acknowledged: int = 0
    reads_checked: int = 0
    stale: list[StaleRead] = field(default_factory=list)
    grace_us: int = 0
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per log source: ``reads_checked``, ``stale_reads``, ``stale_beyond_grace``."""

    @property
    def ok(self) -> bool:
        return not self.stale

    @property
    def stale_beyond_grace(self) -> int:
        return sum(1 for s in self.stale if s.late)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "writes_acknowledged": self.writes_acknowledged,
            "reads_checked": self.reads_checked, "stale_reads": len(self.stale),
            "examples": [vars(s) for s in self.stale[:10]]}
        if self.grace_us:
            out["grace_us"] = self.grace_us
            out["stale_beyond_grace"] = self.stale_beyond_grace
        if self.by_source:
            out["by_source"] = self.by_source
        return out


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


def _expected(entry: _Acks | None, base: int, before_us: int) -> int:
    """The newest version acknowledged strictly before ``before_us`` (or ``base``)."""
    if entry is None:
        return base
    i = bisect.bisect_left(entry.times, before_us)
    return max(base, entry.versions[i - 1]) if i else base


def check(acks: Iterable[tuple[int, int, int]], reads: Iterable[tuple[int, int, int]],
          base_versions: Mapping[int, int] | None = None, *, grace_us: int = 0,
          source: str = "") -> StaleReport:
    """Check every read against the last write of its post acknowledged before it was sent.

    ``base_versions`` are versions acknowledged before the load started (the bench sets each
    written post to a known version first): any read older than those is stale too.  A stale
    read is ``late`` when even the writes acknowledged more than ``grace_us`` before it was
    sent are newer than what it showed.
    """
    report = StaleReport(grace_us=grace_us)
    per_post = _index(acks, report)
    _check_reads(per_post, reads, dict(base_versions or {}), grace_us, source, report)
    return report


def _index(acks: Iterable[tuple[int, int, int]], report: StaleReport) -> dict[int, _Acks]:
    per_post: dict[int, _Acks] = {}
    for post_id, version, t_ack in sorted(acks, key=lambda a: a[2]):
        entry = per_post.setdefault(post_id, _Acks())
        entry.times.append(t_ack)
        entry.versions.append(version)
        report.writes_acknowledged += 1
    return per_post


def _check_reads(per_post: Mapping[int, _Acks], reads: Iterable[tuple[int, int, int]],
                 base: Mapping[int, int], grace_us: int, source: str,
                 report: StaleReport) -> None:
    counts = report.by_source.setdefault(source, {
        "reads_checked": 0, "stale_reads": 0, "stale_beyond_grace": 0}) if source else None
    for post_id, seen, t_send in reads:
        report.reads_checked += 1
        entry = per_post.get(post_id)
        expected = _expected(entry, base.get(post_id, 0), t_send)
        if counts is not None:
            counts["reads_checked"] += 1
        if seen >= expected:
            continue
        late = seen < _expected(entry, base.get(post_id, 0), t_send - grace_us) \
            if grace_us else True
        report.stale.append(StaleRead(post_id, seen, expected, t_send, source, late))
        if counts is not None:
            counts["stale_reads"] += 1
            counts["stale_beyond_grace"] += int(late)


Log = tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]
"""One source's ``(acks, reads)``, as ``parse_lines`` returns them."""


def check_sources(sources: Mapping[str, Log],
                  base_versions: Mapping[int, int] | None = None, *,
                  grace_us: int = 0) -> StaleReport:
    """Check the reads of every source against the acknowledged writes of *all* sources.

    ``sources`` maps a name (an instance) to its ``(acks, reads)``: all times come from one
    clock, so a read logged by one instance's load generator is checked against the writes
    another's acknowledged."""
    report = StaleReport(grace_us=grace_us)
    per_post = _index([a for source_acks, _ in sources.values() for a in source_acks], report)
    for name, (_, reads) in sources.items():
        _check_reads(per_post, reads, dict(base_versions or {}), grace_us, name, report)
    return report


def read_dir(log_dir: Path) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """The acks and reads of the ``thread-*.log`` files ``lua/mixed.lua`` wrote in ``log_dir``."""
    acks: list[tuple[int, int, int]] = []
    reads: list[tuple[int, int, int]] = []
    for path in sorted(log_dir.glob("thread-*.log")):
        with path.open() as lines:
            a, r = parse_lines(lines)
        acks.extend(a)
        reads.extend(r)
    return acks, reads


def check_dir(log_dir: Path, base_versions: Mapping[int, int] | None = None) -> StaleReport:
    """Check the ``thread-*.log`` files that ``lua/mixed.lua`` wrote into ``log_dir``."""
    acks, reads = read_dir(log_dir)
    return check(acks, reads, base_versions)


def check_dirs(log_dirs: Mapping[str, Path], base_versions: Mapping[int, int] | None = None, *,
               grace_us: int = 0) -> StaleReport:
    """``check_sources`` over one log directory per instance."""
    return check_sources({name: read_dir(path) for name, path in log_dirs.items()},
                         base_versions, grace_us=grace_us)
