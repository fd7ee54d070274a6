"""The stale-windows bench's pure logic: wrk's per-response log split at each key's expiry,
refreshes per key from Redis ``MONITOR``, the outage probes, and the issue's targets.

Times are ``CLOCK_MONOTONIC`` microseconds (``lua/swr.lua`` and ``time.monotonic()``), except
``MONITOR``'s, which are Redis's wall clock in seconds (only compared with each other).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.resources import percentile

BOUNDARY_US = 500_000
"""Answers sent from this long *before* a key's computed expiry count as after it: the expiry
is taken from when the warming answer arrived, the store happened slightly before."""
FIRST_SECONDS = 5.0
"""The first seconds after each key's expiry, reported apart (where misses would pile up)."""
HIT_P99_FACTOR = 1.5
HIT_P99_SLACK_MS = 2.0
"""p99 after the TTL "stays at hit latency" when it is at most the larger of 1.5x the p99
before it and that p99 + 2 ms (a shared 2-core machine; a miss costs several times more)."""


@dataclass(frozen=True)
class Answer:
    """One response logged by ``lua/swr.lua``."""

    sent_us: int
    latency_us: int
    status: int
    x_cache: str
    path: int
    """1-based index into the paths file."""


def parse_log(lines: Iterable[str]) -> list[Answer]:
    """``t_send latency status x_cache path_index`` lines (anything else is skipped)."""
    answers = []
    for line in lines:
        parts = line.split()
        if len(parts) == 5 and parts[0].isdigit():
            answers.append(Answer(int(parts[0]), int(parts[1]), int(parts[2]), parts[3],
                                  int(parts[4])))
    return answers


def read_logs(log_dir: Path) -> list[Answer]:
    answers: list[Answer] = []
    for path in sorted(log_dir.glob("swr-*.log")):
        with path.open() as lines:
            answers += parse_log(lines)
    return answers


def latency(answers: Sequence[Answer]) -> dict[str, Any]:
    """Count, p50, p99 and max latency (ms) and the X-Cache values of ``answers``."""
    ms = [a.latency_us / 1000 for a in answers]
    caches: dict[str, int] = {}
    for a in answers:
        caches[a.x_cache] = caches.get(a.x_cache, 0) + 1
    return {"count": len(ms), "p50_ms": round(percentile(ms, 50), 3),
            "p99_ms": round(percentile(ms, 99), 3), "max_ms": round(max(ms, default=0.0), 3),
            "x_cache": dict(sorted(caches.items())),
            "errors": sum(1 for a in answers if not 200 <= a.status < 300)}


def split_at_expiry(answers: Iterable[Answer], expiry_us: Mapping[int, int]) -> dict[str, Any]:
    """The expiring paths' answers before and after each one's own expiry.

    ``expiry_us`` maps a path index to when its entry's TTL ran out; other paths are left out.
    ``first``: the answers of the first ``FIRST_SECONDS`` after expiry; ``first_per_key``: the
    first answer of each key after its expiry that was not a fresh hit (``STALE``, or a
    ``MISS``): without the stale window, the one that would have waited for the database. A
    key that only ever answered ``HIT`` shows its first answer after the expiry."""
    before: list[Answer] = []
    after: list[Answer] = []
    first: list[Answer] = []
    first_per_key: dict[int, Answer] = {}
    for a in sorted(answers, key=lambda a: a.sent_us):
        expiry = expiry_us.get(a.path)
        if expiry is None:
            continue
        if a.sent_us < expiry - BOUNDARY_US:
            before.append(a)
            continue
        after.append(a)
        if a.sent_us < expiry + FIRST_SECONDS * 1e6:
            first.append(a)
        seen = first_per_key.get(a.path)
        if seen is None or (seen.x_cache == "HIT" and a.x_cache != "HIT"):
            first_per_key[a.path] = a
    return {"before": latency(before), "after": latency(after), "first": latency(first),
            "first_per_key": {str(k): {"latency_ms": round(v.latency_us / 1000, 3),
                                       "x_cache": v.x_cache, "status": v.status,
                                       "sent_after_expiry_s": round(
                                           (v.sent_us - expiry_us[k]) / 1e6, 3)}
                              for k, v in sorted(first_per_key.items())}}


def hit_bound_ms(before_p99_ms: float) -> float:
    return max(HIT_P99_FACTOR * before_p99_ms, before_p99_ms + HIT_P99_SLACK_MS)


_MONITOR = re.compile(r'^\+?(\d+\.\d+) \[\d+ ([^\]]+)\] "(\w+)" "((?:[^"\\]|\\.)*)"')


def parse_monitor(line: str) -> tuple[float, str, str, str] | None:
    """``(time, client, command, first argument)`` of one ``MONITOR`` line, else None."""
    match = _MONITOR.match(line)
    if match is None:
        return None
    return float(match[1]), match[2], match[3].upper(), match[4]


def refreshes_per_key(sets: Iterable[tuple[float, str, str]],
                      keys: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """For each URL of ``keys`` (cache key -> URL): how many times each Redis client (one per
    worker process) stored it, from ``(time, client, key)`` of the ``SET`` commands seen."""
    out: dict[str, dict[str, int]] = {url: {} for url in keys.values()}
    for _, client, key in sets:
        url = keys.get(key)
        if url is not None:
            out[url][client] = out[url].get(client, 0) + 1
    return out


def refresh_verdict(per_key: Mapping[str, Mapping[str, int]], workers: int,
                    stats: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """Exactly one refresh per key: per process, every expired key was stored at most once by
    each worker, by at least one; in all, between 1 and ``workers`` times (the lock is per
    process, ``middleware/refresh.py``), exactly 1 with one worker. ``stats`` (each worker's
    ``/health/cache`` counters over the load) must count the same refreshes, none failed."""
    per_process = [n for clients in per_key.values() for n in clients.values()]
    totals = [sum(clients.values()) for clients in per_key.values()]
    counted = sum(s.get("refreshes", 0) for s in stats.values())
    failed = sum(s.get("refresh_failures", 0) for s in stats.values())
    return {
        "keys": len(per_key),
        "per_key_per_process": [min(per_process, default=0), max(per_process, default=0)],
        "per_key_in_all": [min(totals, default=0), max(totals, default=0)],
        "stats_refreshes": counted, "stats_refresh_failures": failed,
        "met": bool(per_key) and all(n == 1 for n in per_process)
        and all(1 <= t <= workers for t in totals) and counted == sum(totals) and failed == 0,
    }


def answer_kind(status: int, x_cache: str, cache_status: str) -> str:
    """What one outage probe got: ``hit``, ``stale`` (within stale-while-revalidate),
    ``stale-if-error`` (``fwd=stale``), ``miss`` or ``error``."""
    if not 200 <= status < 300:
        return "error"
    if "fwd=stale" in cache_status:
        return "stale-if-error"
    if x_cache == "STALE":
        return "stale"
    return "hit" if x_cache == "HIT" else "miss"


@dataclass(frozen=True)
class Probe:
    """One request sent while PostgreSQL was stopped."""

    group: str
    url: str
    status: int
    x_cache: str
    cache_status: str
    seconds: float
    same_as_before: bool
    """The body equals the one captured before the write (and the outage)."""
    error: str = ""

    @property
    def kind(self) -> str:
        return answer_kind(self.status, self.x_cache, self.cache_status)


def outage_summary(probes: Sequence[Probe]) -> dict[str, Any]:
    """Per group: answers by kind and status, latency, client errors, bodies as before."""
    groups: dict[str, Any] = {}
    for group in dict.fromkeys(p.group for p in probes):
        mine = [p for p in probes if p.group == group]
        kinds: dict[str, int] = {}
        statuses: dict[str, int] = {}
        for p in mine:
            kinds[p.kind] = kinds.get(p.kind, 0) + 1
            statuses[str(p.status)] = statuses.get(str(p.status), 0) + 1
        seconds = [p.seconds * 1000 for p in mine]
        groups[group] = {
            "probes": len(mine), "urls": len({p.url for p in mine}), "kinds": kinds,
            "statuses": statuses, "client_errors": sum(p.kind == "error" for p in mine),
            "same_as_before": sum(p.same_as_before for p in mine),
            "served_before_write": sum(p.same_as_before and p.kind != "error" for p in mine),
            "p50_ms": round(percentile(seconds, 50), 1), "max_ms": round(max(seconds), 1)}
    return groups


def targets(swr: Mapping[str, Any], refresh: Mapping[str, Any], outage: Mapping[str, Any],
            workers: int) -> list[dict[str, Any]]:
    """The issue's targets for one run (``workers`` worker processes), met or not."""
    before, after = swr["before"], swr["after"]
    bound = hit_bound_ms(before["p99_ms"])
    first = [v["latency_ms"] for v in swr["first_per_key"].values()]
    misses_after = after["x_cache"].get("MISS", 0)
    stale_after = after["x_cache"].get("STALE", 0)
    current = [g for name, g in outage.items() if name.startswith("current")]
    invalidated = outage.get("invalidated", {})
    current_errors = sum(g["client_errors"] for g in current)
    served_stale = sum(g["kinds"].get("stale-if-error", 0) for g in current)
    served_invalid = invalidated.get("served_before_write", 0)
    w = f"{workers} worker{'s' if workers > 1 else ''}"
    return [
        {"name": f"SWR: p99 of the expiring route after its TTL ({w})",
         "measured": f"{after['p99_ms']:.2f} ms ({after['count']:,} answers, {stale_after:,} "
                     f"STALE) vs {before['p99_ms']:.2f} ms before",
         "required": f"<= {bound:.2f} ms (hit latency)",
         "met": after["count"] > 0 and stale_after > 0 and after["p99_ms"] <= bound},
        {"name": f"SWR: each key's first answer after its TTL ({w})",
         "measured": f"max {max(first, default=0):.2f} ms over {len(first)} keys; "
                     f"{misses_after} MISS after the TTL",
         "required": f"<= {bound:.2f} ms, 0 MISS",
         "met": bool(first) and max(first) <= bound and misses_after == 0},
        {"name": f"SWR: refreshes per key ({w})",
         "measured": f"per process {_span(refresh['per_key_per_process'])}, in all "
                     f"{_span(refresh['per_key_in_all'])} over {refresh['keys']} keys; workers "
                     f"counted {refresh['stats_refreshes']} ({refresh['stats_refresh_failures']}"
                     " failed)",
         "required": f"exactly 1 per process; 1..{workers} in all; the same count, 0 failed",
         "met": refresh["met"]},
        {"name": f"SIE: client errors on current routes, PostgreSQL stopped ({w})",
         "measured": f"{current_errors} of {sum(g['probes'] for g in current)} "
                     f"({served_stale} served by stale-if-error)",
         "required": "0 (and stale-if-error exercised)",
         "met": current_errors == 0 and served_stale > 0},
        {"name": f"SIE: invalidated entries served, PostgreSQL stopped ({w})",
         "measured": f"{served_invalid} of {invalidated.get('probes', 0)}",
         "required": "0", "met": invalidated.get("probes", 0) > 0 and served_invalid == 0},
    ]


def _span(pair: Sequence[int]) -> str:
    low, high = pair
    return str(low) if low == high else f"{low}..{high}"
