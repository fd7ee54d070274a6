"""The bench's markdown report, rendered from synthetic results."""

from __future__ import annotations

from typing import Any

from bench.report import markdown, miss_floor_table, workload_table
from bench.stats import check_targets, summarise


def _record(config: str, workload: str, rps: float, workers: int = 1,
            **counts: int) -> dict[str, Any]:
    return {"config": config, "workers": workers, "workload": workload, "round": 1,
            "result": {"rps": rps, "requests": int(rps * 8),
                       "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 4.0},
                       "counts": counts, "error_total": 0, "non_2xx": 0,
                       "hit_rate": 1.0 if counts.get("hit") else None},
            "redis_commands": None, "stale": None, "notes": []}


RECORDS = [
    _record("limit", "hits", 8000),
    _record("peer", "hits", 500, hit=4000),
    _record("redis", "hits", 4000, hit=32000),
    _record("redis", "mixed", 1000, hit=7000, miss=500, writes=400)
    | {"stale": {"stale_reads": 0, "reads_checked": 50, "writes_acknowledged": 400}},
]
META = {"started": "2026-01-01 00:00 UTC", "command": "python -m bench.run", "rounds": 1,
        "duration": 8, "warmup": 2, "mixed_threads": 16, "seed": "seeded",
        "load_start": "0.1", "load_end": "0.2", "notes": ["a note"],
        "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 4, "commit": "abc",
                    "service": {"sanic": "1"}, "peer": {"fastapi": "2"}}}


def test_workload_table_has_ratios_to_the_limit_and_the_peer() -> None:
    table = workload_table(summarise(RECORDS), "hits")
    rows = table.splitlines()
    assert rows[0].startswith("| configuration |")
    redis_row = next(r for r in rows if r.startswith("| redis |"))
    assert "| 0.50x | 8.00x |" in redis_row  # 4000 / 8000 and 4000 / 500
    # Order: the limit first, then the peer, then the service's configurations.
    assert [r.split("|")[1].strip() for r in rows[2:]] == ["limit", "peer", "redis"]


def test_markdown_renders_every_section_without_growth_or_profile() -> None:
    summaries = summarise(RECORDS)
    text = markdown(summaries=summaries, targets=check_targets(summaries, None), growth={},
                    profile=None, meta=META)
    assert text.startswith("# Bench results")
    for heading in ("## Targets", "## All hits", "## Mixed", "## Stale-read verification",
                    "## Notes", "## Versions"):
        assert heading in text
    assert "| Redis hit: req/s vs the limit | 0.50x | >= 0.50x | yes |" in text
    assert "| redis | 1 | 400 | 50 | 0 |  | 93.3% | 1.2 |" in text  # 500 misses / 400 writes
    assert "## All misses" not in text  # no such workload in these results


def test_two_instances_get_their_own_section_with_the_probe() -> None:
    stale = {"stale_reads": 1, "reads_checked": 60, "writes_acknowledged": 40,
             "grace_us": 5000, "stale_beyond_grace": 0,
             "by_source": {"A": {"reads_checked": 20, "stale_reads": 0, "stale_beyond_grace": 0},
                           "B": {"reads_checked": 40, "stale_reads": 1,
                                 "stale_beyond_grace": 0}}}
    probe = {"writes": 2, "seen": 2, "never_seen": 0, "reads": 3, "old_reads_after_ack": 1,
             "late_old_reads": 0, "late_ms": 5.0, "warm_hits": 2, "delays_ms": [1.5, 2.5]}
    records = [*RECORDS, _record("redis-hot-2i", "mixed", 2000, hit=9000, miss=500, writes=400)
               | {"stale": stale, "probe": probe}]
    summaries = summarise(records)
    text = markdown(summaries=summaries, targets=check_targets(summaries, None), growth={},
                    profile=None, meta=META)
    assert "## Two instances (redis-hot-2i" in text
    assert "| B | 40 | 1 | 0 |" in text
    assert "400 writes, 2.5% of all 16,000 requests" in text
    assert "60 (A: 20, B: 40)" in text
    assert "p50 1.50 ms, p99 2.50 ms, max 2.50 ms" in text
    assert "| 2 instances: stale reads beyond 5 ms (wrk logs, writes on A) | 0 of 60 checked " \
           "reads (40 on B) | 0 | yes |" in text


def test_uncached_feed_is_compared_with_the_raw_reference() -> None:
    """Req/s and server CPU per request of no-cache against raw-asyncpg, same workload."""
    records = [
        _record("no-cache", "hits", 600) | {"server_cpu_s": 4.8},  # 1,000 µs per request
        _record("raw-asyncpg", "hits", 1000) | {"server_cpu_s": 4.0},  # 500 µs per request
        _record("no-cache", "misses", 700) | {"server_cpu_s": 5.6},
        _record("raw-asyncpg", "misses", 1000) | {"server_cpu_s": 4.0},
    ]
    summaries = summarise(records)
    targets = {t.name: t for t in check_targets(summaries, None)}
    rps = targets["Uncached feed: req/s vs the raw asyncpg reference"]
    assert (rps.measured, rps.required, rps.met) == ("0.60x", ">= 0.60x", True)
    cpu = targets["Uncached feed: server CPU per request vs the raw reference"]
    assert (cpu.measured, cpu.required, cpu.met) == ("2.00x", "<= 1.6x", False)
    text = markdown(summaries=summaries, targets=list(targets.values()), growth={},
                    profile=None, meta=META)
    assert "## Uncached feed vs the raw asyncpg reference" in text
    assert "| hits | 1 | 600 | 1,000 | 0.60x | 1,000 | 500 | 2.00x |" in text
    assert "| misses | 1 | 700 | 1,000 | 0.70x | 1,000 | 500 | 2.00x |" in text


def test_compression_targets_compare_br_hits_with_uncompressed_hits() -> None:
    """req/s, server CPU, bytes on the wire and Redis memory of redis-hot-br against
    redis-hot-plain, on the all-hits URL."""
    def hits(config: str, rps: float, cpu_s: float, per_response: int,
             entry: int) -> dict[str, Any]:
        record = _record(config, "hits", rps, hit=int(rps * 8))
        record["result"]["bytes"] = per_response * record["result"]["requests"]
        return record | {"server_cpu_s": cpu_s, "entry_bytes": entry}

    records = [hits("redis-hot-plain", 10_000, 0.8, 6_800, 7_240),  # 10 µs per request
               hits("redis-hot-br", 10_500, 0.8, 2_160, 2_120),  # 9.5 µs per request
               _record("redis-hot-br", "misses", 700), _record("limit", "hits", 15_000)]
    summaries = summarise(records)
    targets = {t.name: t for t in check_targets(summaries, None)}
    filed = targets["Compressed hits (br): req/s vs the limit, against uncompressed hits when "
                    "the issue was filed"]
    assert (filed.measured, filed.required, filed.met) == ("0.70x", ">= 0.58x", True)
    rps = targets["Compressed hits (br): req/s vs uncompressed hits"]
    assert (rps.measured, rps.required, rps.met) == ("1.05x", ">= 1.00x", True)
    cpu = targets["Compressed hits (br): server CPU per request vs uncompressed"]
    assert (cpu.measured, cpu.required, cpu.met) == ("0.95x", "<= 1.00x", True)
    wire = targets["Bytes per feed hit (headers included), br vs uncompressed"]
    assert (wire.measured, wire.required, wire.met) == \
        ("0.32x (2,160 vs 6,800)", "<= 0.35x", True)
    memory = targets["Redis memory per feed entry, compressed vs uncompressed"]
    assert (memory.measured, memory.met) == ("0.29x (2,120 vs 7,240 bytes)", True)
    text = markdown(summaries=summaries, targets=list(targets.values()), growth={},
                    profile=None, meta=META)
    assert "## Compression in the cache (hot tier, 1 worker)" in text
    assert "| hits | redis-hot-plain | `(none)` | 10,000 | 10 | 6,800 | 7,240 |" in text
    assert "| hits | redis-hot-br | `gzip, br` | 10,500 | 10 | 2,160 | 2,120 |" in text
    assert "| misses | redis-hot-br | `gzip, br` | 700 |  |  |  |" in text


def test_compression_targets_fail_over_the_bounds_and_need_both_configurations() -> None:
    def hits(config: str, rps: float, total_bytes: int, entry: int) -> dict[str, Any]:
        record = _record(config, "hits", rps, hit=1)
        record["result"]["bytes"] = total_bytes
        return record | {"entry_bytes": entry}

    plain = hits("redis-hot-plain", 10_000, 1_000_000, 1_000)
    br = hits("redis-hot-br", 9_000, 360_000, 360)
    targets = {t.name: t for t in check_targets(summarise([plain, br]), None)}
    assert targets["Compressed hits (br): req/s vs uncompressed hits"].met is False
    # Without the limit in the run, no comparison with the day.
    assert not any("when the issue was filed" in name for name in targets)
    slow = {t.name: t for t in check_targets(summarise(
        [plain, br, _record("limit", "hits", 16_000)]), None)}
    assert slow["Compressed hits (br): req/s vs the limit, against uncompressed hits when "
                "the issue was filed"].met is False  # 0.56x
    assert targets["Bytes per feed hit (headers included), br vs uncompressed"].met is False
    assert targets["Redis memory per feed entry, compressed vs uncompressed"].met is False
    # No CPU measured: no CPU cross-check.
    assert "Compressed hits (br): server CPU per request vs uncompressed" not in targets
    alone = {t.name for t in check_targets(summarise([br]), None)}
    assert not any(name.startswith(("Compressed", "Bytes per feed", "Redis memory"))
                   for name in alone)


def test_miss_floor_table_compares_each_cache_with_its_own_uncached_handler() -> None:
    def misses(config: str, rps: float, cpu_us: float) -> dict[str, Any]:
        record = _record(config, "misses", rps)
        return record | {"server_cpu_s": cpu_us * record["result"]["requests"] / 1e6}

    records = [misses("raw-asyncpg", 4_000, 200), misses("raw-asyncpg-redis", 3_000, 260),
               misses("no-cache", 3_500, 250), misses("redis-hot-plain", 2_000, 420)]
    table = miss_floor_table(summarise(records))
    assert "| raw-asyncpg | raw-asyncpg | 4,000 | 1.00x | 200 | 1.00x |  |" in table
    assert "| raw-asyncpg-redis | raw-asyncpg | 3,000 | 0.75x | 260 | 1.30x | +60 |" in table
    assert "| redis-hot-plain | no-cache | 2,000 | 0.57x | 420 | 1.68x | +170 |" in table
    assert "| redis-hot |" not in table  # not in this run
    text = markdown(summaries=summarise(records), targets=[], growth={}, profile=None,
                    meta=META)
    assert "## What a miss adds, against the least a shared cache can do" in text
    # Without the floor's configuration there is nothing to compare with.
    assert miss_floor_table(summarise(records[2:])) == ""
