"""Aggregate the rounds of each (configuration, workload) and check the issue's targets."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench import probe as probe_delay

PERCENTILES = ("p50", "p95", "p99")


@dataclass
class Summary:
    """The rounds of one configuration on one workload, reduced to medians."""

    config: str
    workers: int
    workload: str
    rps_runs: list[float]
    latency_ms: dict[str, float]
    errors: int
    non_2xx: int
    hit_rate: float | None
    redis_commands_per_request: float | None = None
    redis_commands: dict[str, float] = field(default_factory=dict)
    http_requests_per_request: float | None = None
    """REST backend only: HTTP requests the stand-in served per request."""
    stale_reads: int | None = None
    reads_checked: int | None = None
    writes_acknowledged: int | None = None
    hits: int = 0
    misses: int = 0
    writes: int = 0
    requests: int = 0
    """Responses over every round (reads and writes)."""
    route_misses: dict[str, int] = field(default_factory=dict)
    """Cache misses per route over every round (the mixed workload, cached configurations)."""
    cpu_us_per_request: float | None = None
    """Server CPU per request (all rounds), the noise-robust counterpart of requests/s."""
    stale_beyond_grace: int | None = None
    """Stale reads sent more than the grace period after the write they missed."""
    stale_by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per instance (several instances): reads checked, stale, stale beyond the grace."""
    probe: dict[str, Any] | None = None
    """The invalidation delay probe over every round (``bench.probe.merge``)."""
    hot_hits: int | None = None
    """Hot-tier hits reported by ``/health/cache`` after the runs (one worker's view)."""
    bytes_per_request: float | None = None
    """Bytes on the wire per response (wrk's count, headers included), over every round."""
    entry_bytes: int | None = None
    """Redis ``MEMORY USAGE`` of the all-hits URL's entry (the largest of the rounds)."""

    @property
    def rps(self) -> float:
        return statistics.median(self.rps_runs) if self.rps_runs else 0.0


def summarise(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int, str], Summary]:
    """Group raw records (``measure.Record`` as dicts) by configuration and workload."""
    groups: dict[tuple[str, int, str], list[Mapping[str, Any]]] = {}
    for record in records:
        key = (record["config"], int(record["workers"]), record["workload"])
        groups.setdefault(key, []).append(record)
    out: dict[tuple[str, int, str], Summary] = {}
    for key, runs in groups.items():
        results = [r["result"] for r in runs]
        latency = {p: statistics.median(r["latency_ms"][p] for r in results) for p in PERCENTILES}
        rates = [r["hit_rate"] for r in results if r.get("hit_rate") is not None]
        hits = sum(r["counts"].get("hit", 0) for r in results)
        misses = sum(r["counts"].get("miss", 0) for r in results)
        summary = Summary(
            *key, rps_runs=[r["rps"] for r in results], latency_ms=latency,
            errors=sum(r["error_total"] for r in results),
            non_2xx=sum(r["non_2xx"] for r in results),
            hit_rate=hits / (hits + misses) if rates and hits + misses else None,
            hits=hits, misses=misses,
            writes=sum(r["counts"].get("writes", 0) for r in results),
            requests=sum(int(r.get("requests", 0)) for r in results))
        commands = [(r["redis_commands"], r["result"]["requests"]) for r in runs
                    if r.get("redis_commands") is not None]
        if commands:
            requests = sum(n for _, n in commands)
            per: dict[str, float] = {}
            for calls, _ in commands:
                for name, count in calls.items():
                    per[name] = per.get(name, 0.0) + count
            summary.redis_commands = {k: v / requests for k, v in sorted(per.items())}
            summary.redis_commands_per_request = sum(per.values()) / requests if requests else None
        http = [(r["http_requests"], r["result"]["requests"]) for r in runs
                if r.get("http_requests") is not None]
        if http and sum(n for _, n in http):
            summary.http_requests_per_request = sum(h for h, _ in http) / sum(n for _, n in http)
        cpu = [(r["server_cpu_s"], r["result"]["requests"]) for r in runs
               if r.get("server_cpu_s") is not None]
        if cpu and sum(n for _, n in cpu):
            summary.cpu_us_per_request = 1e6 * sum(c for c, _ in cpu) / sum(n for _, n in cpu)
        for r in runs:
            for route, n in (r.get("route_misses") or {}).items():
                summary.route_misses[route] = summary.route_misses.get(route, 0) + n
        stale = [r["stale"] for r in runs if r.get("stale")]
        if stale:
            summary.stale_reads = sum(s["stale_reads"] for s in stale)
            summary.reads_checked = sum(s["reads_checked"] for s in stale)
            summary.writes_acknowledged = sum(s["writes_acknowledged"] for s in stale)
            graced = [s["stale_beyond_grace"] for s in stale if "stale_beyond_grace" in s]
            summary.stale_beyond_grace = sum(graced) if graced else None
            for s in stale:
                for source, counts in (s.get("by_source") or {}).items():
                    into = summary.stale_by_source.setdefault(source, {})
                    for k, v in counts.items():
                        into[k] = into.get(k, 0) + v
        probes = [r["probe"] for r in runs if r.get("probe")]
        if probes:
            summary.probe = probe_delay.merge(probes)
        read = [(r["bytes"], r["requests"]) for r in results if r.get("bytes")]
        if read and sum(n for _, n in read):
            summary.bytes_per_request = sum(b for b, _ in read) / sum(n for _, n in read)
        entries = [r["entry_bytes"] for r in runs if r.get("entry_bytes") is not None]
        if entries:
            summary.entry_bytes = max(entries)
        hot = [r["hot"]["hits"] for r in runs if (r.get("hot") or {}).get("hits") is not None]
        if hot:
            summary.hot_hits = max(hot)
        out[key] = summary
    return out


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


@dataclass(frozen=True)
class Target:
    """One target of the issue, measured."""

    name: str
    measured: str
    required: str
    met: bool | None  # None: not measured in this run


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def check_targets(summaries: Mapping[tuple[str, int, str], Summary],
                  growth: Mapping[str, Any] | None) -> list[Target]:
    """The issue's targets (1 worker), each with what this run measured."""
    def get(config: str, workload: str) -> Summary | None:
        return summaries.get((config, 1, workload))

    targets: list[Target] = []
    limit, redis_hit, peer = get("limit", "hits"), get("redis", "hits"), get("peer", "hits")
    if limit and redis_hit:
        r = ratio(redis_hit.rps, limit.rps)
        targets.append(Target("Redis hit: req/s vs the limit", f"{_fmt(r)}x", ">= 0.50x",
                              r is not None and r >= 0.5))
        p = ratio(redis_hit.latency_ms["p99"], limit.latency_ms["p99"])
        targets.append(Target("Redis hit: p99 vs the limit's p99", f"{_fmt(p)}x", "<= 3x",
                              p is not None and p <= 3))
    if peer and redis_hit:
        r = ratio(redis_hit.rps, peer.rps)
        targets.append(Target("All hits: req/s vs the peer", f"{_fmt(r)}x", ">= 6x",
                              r is not None and r >= 6))
    targets += raw_targets(summaries)
    targets += compression_targets(summaries)
    nocache = get("no-cache", "misses")
    for name in ("redis", "memory"):
        miss = get(name, "misses")
        if nocache and miss:
            r = ratio(miss.rps, nocache.rps)
            targets.append(Target(f"All misses ({name}): req/s vs no cache", f"{_fmt(r)}x",
                                  ">= 0.90x", r is not None and r >= 0.9))
            c = ratio(miss.cpu_us_per_request, nocache.cpu_us_per_request)
            if c is not None:
                # The same question asked of CPU time (a CPU-bound worker serves 0.90x the
                # requests when each costs 1/0.90 = 1.11x): a cross-check other work on the
                # machine barely moves, unlike requests/s.
                targets.append(Target(f"All misses ({name}): server CPU per request vs no cache",
                                      f"{_fmt(c)}x", "<= 1.11x", c <= 1 / 0.9))
    mixed = get("redis", "mixed")
    if mixed:
        rate = mixed.hit_rate
        targets.append(Target("Mixed (Redis): hit rate with 5% writes",
                              "n/a" if rate is None else f"{100 * rate:.1f}%", ">= 95%",
                              rate is not None and rate >= 0.95))
    stale_total = [s for s in summaries.values() if s.stale_reads is not None]
    if stale_total:
        n = sum(s.stale_reads or 0 for s in stale_total)
        checked = sum(s.reads_checked or 0 for s in stale_total)
        targets.append(Target("Mixed: stale reads (every configuration)",
                              f"{n} of {checked} checked reads", "0", n == 0 and checked > 0))
    if growth and growth.get("keyspace"):
        targets += _growth_targets(growth["keyspace"])
    if redis_hit and redis_hit.redis_commands_per_request is not None:
        c = redis_hit.redis_commands_per_request
        targets.append(Target("Redis commands per hit", _fmt(c), "1", 0 < c <= 1.05))
    targets += _hot_targets(summaries)
    redis_miss = get("redis", "misses")
    if redis_miss and redis_miss.redis_commands_per_request is not None:
        c = redis_miss.redis_commands_per_request
        targets.append(Target("Redis commands per miss", _fmt(c), "<= 3", 0 < c <= 3.05))
    down = [s for s in summaries.values() if s.config == "redis-stopped"]
    if down:
        errors = sum(s.errors for s in down)
        targets.append(Target("Redis stopped: errors (all runs)", str(errors), "0", errors == 0))
    down_hit = get("redis-stopped", "hits")
    if down_hit and redis_hit:
        r = ratio(down_hit.rps, redis_hit.rps)
        targets.append(Target("Redis stopped: fallback hit req/s vs Redis hit", f"{_fmt(r)}x",
                              ">= 1.00x", r is not None and r >= 1.0))
    return targets


RAW_RPS_TARGET = 0.60
RAW_CPU_TARGET = 1.6


def raw_targets(summaries: Mapping[tuple[str, int, str], Summary]) -> list[Target]:
    """The uncached feed against the raw asyncpg reference on the same page (the all-hits URL,
    the feed's first page, run uncached): req/s and server CPU per request, 1 worker."""
    from bench.configs import RAW

    service, raw = summaries.get(("no-cache", 1, "hits")), summaries.get((RAW, 1, "hits"))
    if not (service and raw):
        return []
    r = ratio(service.rps, raw.rps)
    targets = [Target("Uncached feed: req/s vs the raw asyncpg reference", f"{_fmt(r)}x",
                      f">= {RAW_RPS_TARGET:.2f}x", r is not None and r >= RAW_RPS_TARGET)]
    c = ratio(service.cpu_us_per_request, raw.cpu_us_per_request)
    if c is not None:
        targets.append(Target("Uncached feed: server CPU per request vs the raw reference",
                              f"{_fmt(c)}x", f"<= {RAW_CPU_TARGET:.1f}x", c <= RAW_CPU_TARGET))
    return targets


COMPRESSED_RPS_TARGET = 1.00
COMPRESSED_BYTES_TARGET = 0.35
FILED_HIT_VS_LIMIT = 0.58
"""Issue 11 asks compressed hits for at least "today's uncompressed hit req/s": the run it
quotes (commit 7e5dcf4's ``bench/results/latest.md``) had Redis hits at 0.58x the limit's req/s.
Compared as a ratio to the limit measured in the same run, since req/s on this shared machine
moves between runs."""


def compression_targets(summaries: Mapping[tuple[str, int, str], Summary]) -> list[Target]:
    """Compression in the cache, on the feed's first page with the hot tier (1 worker):
    ``redis-hot-br`` (stored brotli-encoded, asked with ``Accept-Encoding: gzip, br``) against
    ``redis-hot-plain`` (stored as it is, asked without: the cache before compression)."""
    from bench.configs import BR, PLAIN

    plain, br = summaries.get((PLAIN, 1, "hits")), summaries.get((BR, 1, "hits"))
    if not (plain and br):
        return []
    targets = []
    limit = summaries.get(("limit", 1, "hits"))
    if limit:
        v = ratio(br.rps, limit.rps)
        targets.append(Target("Compressed hits (br): req/s vs the limit, against uncompressed "
                              "hits when the issue was filed", f"{_fmt(v)}x",
                              f">= {FILED_HIT_VS_LIMIT:.2f}x",
                              v is not None and v >= FILED_HIT_VS_LIMIT))
    # Stricter than the issue: against uncompressed hits of this run, hot tier and all.
    r = ratio(br.rps, plain.rps)
    targets.append(Target("Compressed hits (br): req/s vs uncompressed hits", f"{_fmt(r)}x",
                          f">= {COMPRESSED_RPS_TARGET:.2f}x",
                          r is not None and r >= COMPRESSED_RPS_TARGET))
    c = ratio(br.cpu_us_per_request, plain.cpu_us_per_request)
    if c is not None:
        # The req/s target asked of CPU time, which other work on the machine barely moves.
        targets.append(Target("Compressed hits (br): server CPU per request vs uncompressed",
                              f"{_fmt(c)}x", f"<= {1 / COMPRESSED_RPS_TARGET:.2f}x",
                              c <= 1 / COMPRESSED_RPS_TARGET))
    b = ratio(br.bytes_per_request, plain.bytes_per_request)
    if b is not None:
        targets.append(Target("Bytes per feed hit (headers included), br vs uncompressed",
                              f"{_fmt(b)}x ({br.bytes_per_request:,.0f} vs "
                              f"{plain.bytes_per_request:,.0f})",
                              f"<= {COMPRESSED_BYTES_TARGET:.2f}x",
                              b <= COMPRESSED_BYTES_TARGET))
    m = ratio(br.entry_bytes, plain.entry_bytes)
    if m is not None:
        targets.append(Target("Redis memory per feed entry, compressed vs uncompressed",
                              f"{_fmt(m)}x ({br.entry_bytes:,} vs {plain.entry_bytes:,} bytes)",
                              f"<= {COMPRESSED_BYTES_TARGET:.2f}x",
                              m <= COMPRESSED_BYTES_TARGET))
    return targets


HOT_COMMANDS_PER_HIT = 0.005
"""At most this many Redis commands per hot hit count as zero: the channel's heartbeat
(``PING``, one a second per worker) and an entry's rare expiry are all that may remain."""


def significantly_lower(hits: int, total: int, base_hits: int,
                        base_total: int) -> tuple[bool, float]:
    """Whether the hit rate ``hits / total`` is below ``base_hits / base_total`` by more than
    sampling noise explains, and that margin: a one-sided two-proportion z-test at 95 %
    (1.645 standard errors of the difference, from the pooled rate). Over about 100,000
    reads each at a 93 % hit rate the margin is about 0.18 percentage point."""
    if not total or not base_total:
        return False, 0.0
    pooled = (hits + base_hits) / (total + base_total)
    error = math.sqrt(pooled * (1 - pooled) * (1 / total + 1 / base_total))
    margin = 1.645 * error
    return hits / total < base_hits / base_total - margin, margin


def _hot_targets(summaries: Mapping[tuple[str, int, str], Summary]) -> list[Target]:
    """The hot tier's targets: L1 hits against the limit, zero Redis commands, the mixed hit
    rate with 2 workers, and coherence across two instances."""
    def get(config: str, workload: str, workers: int = 1) -> Summary | None:
        return summaries.get((config, workers, workload))

    targets: list[Target] = []
    limit, hot = get("limit", "hits"), get("redis-hot", "hits")
    if limit and hot:
        r = ratio(hot.rps, limit.rps)
        targets.append(Target("L1 (redis-hot) hit: req/s vs the limit", f"{_fmt(r)}x",
                              ">= 0.85x", r is not None and r >= 0.85))
        p = ratio(hot.latency_ms["p99"], limit.latency_ms["p99"])
        targets.append(Target("L1 (redis-hot) hit: p99 vs the limit's p99", f"{_fmt(p)}x",
                              "<= 1.5x", p is not None and p <= 1.5))
        c = ratio(hot.cpu_us_per_request, limit.cpu_us_per_request)
        if c is not None:
            # The req/s target asked of CPU time, as for misses: 0.85x the requests of a
            # CPU-bound worker is 1/0.85 = 1.18x the CPU per request.
            targets.append(Target("L1 (redis-hot) hit: server CPU per request vs the limit",
                                  f"{_fmt(c)}x", "<= 1.18x", c <= 1 / 0.85))
    if hot and hot.redis_commands_per_request is not None:
        c = hot.redis_commands_per_request
        targets.append(Target("Redis commands per L1 (redis-hot) hit", _fmt(c, ".4f"),
                              f"0 (< {HOT_COMMANDS_PER_HIT})", c < HOT_COMMANDS_PER_HIT))
    one, two = get("redis-hot", "mixed"), get("redis-hot", "mixed", 2)
    if one and one.hit_rate is not None:
        targets.append(Target("Mixed (redis-hot): hit rate with 5% writes",
                              f"{100 * one.hit_rate:.1f}%", ">= 95%", one.hit_rate >= 0.95))
    if one and two and one.hit_rate is not None and two.hit_rate is not None:
        lower, margin = significantly_lower(two.hits, two.hits + two.misses,
                                            one.hits, one.hits + one.misses)
        targets.append(Target(
            "Mixed (redis-hot): hit rate, 2 workers vs 1",
            f"{100 * two.hit_rate:.2f}% vs {100 * one.hit_rate:.2f}% "
            f"(difference {100 * (two.hit_rate - one.hit_rate):+.2f} pt; "
            f"sampling margin {100 * margin:.2f} pt)",
            ">= the 1-worker rate (not lower beyond the sampling margin)", not lower))
    pair = get("redis-hot-2i", "mixed")
    if pair and pair.stale_beyond_grace is not None:
        b = pair.stale_by_source.get("B", {})
        targets.append(Target(
            "2 instances: stale reads beyond 5 ms (wrk logs, writes on A)",
            f"{pair.stale_beyond_grace} of {pair.reads_checked} checked reads "
            f"({b.get('reads_checked', 0)} on B)", "0",
            pair.stale_beyond_grace == 0 and b.get("reads_checked", 0) > 0))
    if pair and pair.probe:
        pr = pair.probe
        targets.append(Target(
            "2 instances: probe reads on B sent > 5 ms after the ack on A showing old content",
            f"{pr['late_old_reads']} of {pr['reads']} reads after {pr['writes']} writes", "0",
            pr["late_old_reads"] == 0 and pr["seen"] > 0))
        if pr.get("p50_ms") is not None:
            targets.append(Target(
                "2 instances: invalidation delay on B (ack on A to first new read), p50/p99/max",
                f"{pr['p50_ms']:.2f} / {pr['p99_ms']:.2f} / {pr['max_ms']:.2f} ms",
                "reported", None))
    return targets


def _growth_targets(keyspace: Mapping[str, Any]) -> list[Target]:
    sizes = [str(s) for s in keyspace.get("sizes", [])]
    if len(sizes) < 2:
        return []
    small, large = sizes[0], sizes[-1]
    out = []
    hit = keyspace.get("hit", {})
    if small in hit and large in hit:
        r = ratio(hit[large]["latency_ms"]["p50"], hit[small]["latency_ms"]["p50"])
        out.append(Target(f"Hit p50 at {int(large):,} vs {int(small):,} unrelated keys",
                          f"{_fmt(r)}x", "<= 1.5x", r is not None and r <= 1.5))
    inv = keyspace.get("invalidate", {})
    if small in inv and large in inv:
        r = ratio(inv[large]["write_ms"]["p50"], inv[small]["write_ms"]["p50"])
        out.append(Target(f"Write+invalidate p50 at {int(large):,} vs {int(small):,} keys "
                          "under the prefix", f"{_fmt(r)}x", "<= 1.5x",
                          r is not None and r <= 1.5))
    return out
