"""Aggregating bench rounds and checking the issue's targets."""

from __future__ import annotations

from typing import Any

import pytest

from bench.stats import check_targets, significantly_lower, summarise


def _record(config: str, workload: str, rps: float, *, workers: int = 1, round_no: int = 1,
            p99: float = 10.0, hits: int = 0, misses: int = 0, errors: int = 0,
            commands: dict[str, int] | None = None, stale: int | None = None) -> dict[str, Any]:
    requests = int(rps * 10)
    record: dict[str, Any] = {
        "config": config, "workers": workers, "workload": workload, "round": round_no,
        "result": {"rps": rps, "requests": requests,
                   "latency_ms": {"p50": p99 / 4, "p95": p99 / 2, "p99": p99},
                   "counts": {"hit": hits, "miss": misses}, "error_total": errors,
                   "non_2xx": errors, "hit_rate": (hits / (hits + misses)
                                                   if hits + misses else None)},
        "redis_commands": commands, "stale": None, "notes": []}
    if stale is not None:
        record["stale"] = {"stale_reads": stale, "reads_checked": 100,
                           "writes_acknowledged": 10}
    return record


def test_rounds_reduce_to_medians_and_pooled_hit_rates() -> None:
    summaries = summarise([
        _record("redis", "hits", 1000, p99=10, hits=90, misses=10),
        _record("redis", "hits", 3000, round_no=2, p99=30, hits=10, misses=0),
        _record("redis", "hits", 2000, round_no=3, p99=20, hits=0, misses=0),
    ])
    s = summaries[("redis", 1, "hits")]
    assert s.rps == 2000
    assert s.rps_runs == [1000, 3000, 2000]
    assert s.latency_ms["p99"] == 20
    assert s.hit_rate == pytest.approx(100 / 110)


def test_redis_commands_are_per_request_over_all_rounds() -> None:
    summaries = summarise([
        _record("redis", "misses", 100, commands={"mget": 1000, "set": 1000}),
        _record("redis", "misses", 100, round_no=2, commands={"mget": 1000, "set": 900}),
    ])
    s = summaries[("redis", 1, "misses")]
    assert s.redis_commands_per_request == pytest.approx(3900 / 2000)
    assert s.redis_commands == pytest.approx({"mget": 1.0, "set": 0.95})


def _targets(records: list[dict[str, Any]],
             growth: dict[str, Any] | None = None) -> dict[str, Any]:
    return {t.name: t for t in check_targets(summarise(records), growth)}


def test_targets_met_and_missed() -> None:
    targets = _targets([
        _record("limit", "hits", 10_000, p99=5),
        _record("peer", "hits", 1_000, p99=50),
        _record("redis", "hits", 6_000, p99=16, commands={"mget": 60_000}),
        _record("no-cache", "misses", 1_000),
        _record("redis", "misses", 850, commands={"mget": 8_500, "set": 8_500}),
        _record("memory", "misses", 950),
        _record("redis", "mixed", 900, hits=96, misses=4, stale=0),
        _record("redis-stopped", "hits", 6_500, errors=0),
    ])
    assert targets["Redis hit: req/s vs the limit"].met is True
    assert targets["Redis hit: p99 vs the limit's p99"].met is False  # 16 > 3 * 5
    assert targets["All hits: req/s vs the peer"].met is True
    assert targets["All misses (redis): req/s vs no cache"].met is False  # 0.85
    assert targets["All misses (memory): req/s vs no cache"].met is True
    assert targets["Mixed (Redis): hit rate with 5% writes"].met is True
    assert targets["Mixed: stale reads (every configuration)"].met is True
    assert targets["Redis commands per hit"].met is True
    assert targets["Redis commands per miss"].met is True
    assert targets["Redis stopped: errors (all runs)"].met is True
    assert targets["Redis stopped: fallback hit req/s vs Redis hit"].met is True


def test_stale_reads_and_errors_fail_their_targets() -> None:
    targets = _targets([
        _record("memory", "mixed", 900, hits=50, misses=50, stale=2),
        _record("redis-stopped", "misses", 100, errors=3),
    ])
    assert targets["Mixed: stale reads (every configuration)"].met is False
    assert targets["Redis stopped: errors (all runs)"].met is False


def test_growth_targets_compare_the_largest_keyspace_with_the_smallest() -> None:
    growth = {"keyspace": {
        "sizes": [1_000, 1_000_000],
        "hit": {"1000": {"latency_ms": {"p50": 2.0}}, "1000000": {"latency_ms": {"p50": 2.9}}},
        "invalidate": {"1000": {"write_ms": {"p50": 4.0}},
                       "1000000": {"write_ms": {"p50": 9.0}}}}}
    targets = _targets([], growth)
    assert targets["Hit p50 at 1,000,000 vs 1,000 unrelated keys"].met is True
    assert targets["Write+invalidate p50 at 1,000,000 vs 1,000 keys under the prefix"].met \
        is False


def test_redis_command_diffs_keep_only_what_the_run_sent() -> None:
    from bench.growth import _usec_per_call
    from bench.measure import diff_calls

    before = {"mget": 10, "set": 5, "ping": 1}
    after = {"mget": 110, "set": 5, "ping": 2, "incrby": 3}
    assert diff_calls(before, after) == {"incrby": 3, "mget": 100, "ping": 1}
    usec = _usec_per_call({"incrby": (10, 100)}, {"incrby": (20, 160), "get": (5, 50)})
    assert usec == {"incrby": 6.0, "get": 10.0}


def test_server_cpu_per_request_is_pooled_and_checked_against_no_cache() -> None:
    def with_cpu(record: dict[str, Any], cpu: float) -> dict[str, Any]:
        return {**record, "server_cpu_s": cpu}

    records = [
        with_cpu(_record("no-cache", "misses", 100), 1.0),          # 1000 requests
        with_cpu(_record("no-cache", "misses", 300, round_no=2), 3.0),
        with_cpu(_record("memory", "misses", 100), 1.05),
        with_cpu(_record("memory", "misses", 100, round_no=2), 1.05),
        with_cpu(_record("redis", "misses", 100), 1.3),
        _record("redis", "misses", 100, round_no=2),                  # no CPU figure
    ]
    summaries = summarise(records)
    assert summaries[("no-cache", 1, "misses")].cpu_us_per_request == pytest.approx(1000)
    assert summaries[("memory", 1, "misses")].cpu_us_per_request == pytest.approx(1050)
    assert summaries[("redis", 1, "misses")].cpu_us_per_request == pytest.approx(1300)
    targets = {t.name: t for t in check_targets(summaries, None)}
    memory = targets["All misses (memory): server CPU per request vs no cache"]
    assert memory.met and memory.measured == "1.05x"
    assert not targets["All misses (redis): server CPU per request vs no cache"].met


def test_cpu_seconds_counts_this_process() -> None:
    import os
    import time

    from bench.procs import cpu_seconds

    before = cpu_seconds([os.getpid()])
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert cpu_seconds([os.getpid()]) - before >= 0.03
    assert cpu_seconds([2 ** 22 + 12345]) == 0.0  # no such process


def test_route_misses_add_up_over_rounds_and_report_per_write() -> None:
    from bench.report import _route_misses_table

    records = []
    for round_no, misses in ((1, {"/api/posts": 30, "/api/posts/<post_id:int>": 20}),
                             (2, {"/api/posts": 10})):
        record = _record("redis", "mixed", 100, round_no=round_no, hits=900, misses=60)
        record["result"]["counts"]["writes"] = 20
        record["route_misses"] = misses
        records.append(record)
    summary = summarise(records)[("redis", 1, "mixed")]
    assert summary.route_misses == {"/api/posts": 40, "/api/posts/<post_id:int>": 20}
    table = _route_misses_table({summary_key: summary
                                 for summary_key in [("redis", 1, "mixed")]})
    assert "| redis | 1 | 1.00 | 0.50 | 1.50 |" in table


def test_hot_tier_targets() -> None:
    targets = _targets([
        _record("limit", "hits", 10_000, p99=8),
        _record("redis-hot", "hits", 9_000, p99=11, commands={"ping": 8}),
        _record("redis-hot", "mixed", 900, hits=96_000, misses=4_000, stale=0),
        _record("redis-hot", "mixed", 1200, workers=2, hits=95_000, misses=5_000, stale=0),
    ])
    assert targets["L1 (redis-hot) hit: req/s vs the limit"].met is True  # 0.90x
    assert targets["L1 (redis-hot) hit: p99 vs the limit's p99"].met is True  # 1.375x
    assert "L1 (redis-hot) hit: server CPU per request vs the limit" not in targets  # no CPU
    assert targets["Redis commands per L1 (redis-hot) hit"].measured == "0.0001"
    assert targets["Redis commands per L1 (redis-hot) hit"].met is True
    assert targets["Mixed (redis-hot): hit rate with 5% writes"].met is True
    rate = targets["Mixed (redis-hot): hit rate, 2 workers vs 1"]
    assert rate.measured.startswith("95.00% vs 96.00% (difference -1.00 pt; sampling margin 0.")
    assert rate.met is False  # a whole point over 100,000 reads each is no noise


@pytest.mark.parametrize(("two", "one", "lower"), [
    ((93_547, 100_000), (93_552, 100_000), False),  # the 2026-12-02 run: noise
    ((93_300, 100_000), (93_552, 100_000), True),  # 0.25 pt over 100,000 reads: real
    ((95, 100), (96, 100), False),  # one point over 100 reads: noise
    ((97_000, 100_000), (96_000, 100_000), False),  # higher is never lower
    ((0, 0), (96, 100), False),  # nothing measured: nothing to say
])
def test_a_hit_rate_is_lower_only_beyond_the_sampling_margin(
        two: tuple[int, int], one: tuple[int, int], lower: bool) -> None:
    assert significantly_lower(*two, *one)[0] is lower


def test_the_two_worker_hit_rate_target_allows_only_noise() -> None:
    targets = _targets([
        _record("redis-hot", "mixed", 900, hits=93_552, misses=6_448, stale=0),
        _record("redis-hot", "mixed", 1200, workers=2, hits=93_547, misses=6_453, stale=0),
    ])
    rate = targets["Mixed (redis-hot): hit rate, 2 workers vs 1"]
    assert rate.met is True
    assert "93.55% vs 93.55% (difference -0.00 pt; sampling margin 0.18 pt)" == rate.measured


def test_hot_tier_targets_missed() -> None:
    targets = _targets([
        _record("limit", "hits", 10_000, p99=8),
        _record("redis-hot", "hits", 8_000, p99=13, commands={"mget": 80_000}),
    ])
    assert targets["L1 (redis-hot) hit: req/s vs the limit"].met is False  # 0.80x
    assert targets["L1 (redis-hot) hit: p99 vs the limit's p99"].met is False  # 1.625x
    assert targets["Redis commands per L1 (redis-hot) hit"].met is False


def test_hot_hit_cpu_per_request_is_checked_against_the_limit() -> None:
    def cpu(record: dict[str, Any], seconds: float) -> dict[str, Any]:
        return record | {"server_cpu_s": seconds}

    # 100,000 requests each: 1.0 s is 10 us per request.
    targets = _targets([cpu(_record("limit", "hits", 10_000), 1.0),
                        cpu(_record("redis-hot", "hits", 10_000), 1.15)])
    target = targets["L1 (redis-hot) hit: server CPU per request vs the limit"]
    assert (target.measured, target.met) == ("1.15x", True)
    targets = _targets([cpu(_record("limit", "hits", 10_000), 1.0),
                        cpu(_record("redis-hot", "hits", 10_000), 1.25)])
    assert targets["L1 (redis-hot) hit: server CPU per request vs the limit"].met is False


def _pair(stale: dict[str, Any], probe: dict[str, Any]) -> dict[str, Any]:
    return _record("redis-hot-2i", "mixed", 1000, hits=90, misses=10) | {
        "stale": stale, "probe": probe}


def _probe(late: int, delays: list[float]) -> dict[str, Any]:
    return {"writes": len(delays), "seen": len(delays), "never_seen": 0, "reads": 2 * len(delays),
            "old_reads_after_ack": late, "late_old_reads": late, "late_ms": 5.0,
            "warm_hits": len(delays), "delays_ms": delays}


def _stale(beyond: int, on_b: int = 50) -> dict[str, Any]:
    return {"stale_reads": beyond, "reads_checked": 100, "writes_acknowledged": 10,
            "grace_us": 5000, "stale_beyond_grace": beyond,
            "by_source": {"B": {"reads_checked": on_b, "stale_reads": beyond,
                                "stale_beyond_grace": beyond}}}


def test_two_instance_targets_pool_the_rounds() -> None:
    targets = _targets([_pair(_stale(0), _probe(0, [1.0, 2.0])),
                        {**_pair(_stale(0), _probe(0, [3.0, 40.0])), "round": 2}])
    stale = targets["2 instances: stale reads beyond 5 ms (wrk logs, writes on A)"]
    assert (stale.measured, stale.met) == ("0 of 200 checked reads (100 on B)", True)
    late = targets["2 instances: probe reads on B sent > 5 ms after the ack on A showing old "
                   "content"]
    assert (late.measured, late.met) == ("0 of 8 reads after 4 writes", True)
    delay = targets["2 instances: invalidation delay on B (ack on A to first new read), "
                    "p50/p99/max"]
    assert delay.measured == "2.00 / 40.00 / 40.00 ms"
    assert delay.met is None


def test_two_instance_targets_fail_on_late_stale_reads_or_no_reads_on_b() -> None:
    targets = _targets([_pair(_stale(1), _probe(2, [1.0]))])
    assert targets["2 instances: stale reads beyond 5 ms (wrk logs, writes on A)"].met is False
    assert targets["2 instances: probe reads on B sent > 5 ms after the ack on A showing old "
                   "content"].met is False
    targets = _targets([_pair(_stale(0, on_b=0), _probe(0, [1.0]))])
    assert targets["2 instances: stale reads beyond 5 ms (wrk logs, writes on A)"].met is False


def test_http_requests_per_request_pool_the_rounds_of_the_rest_configuration() -> None:
    first = _record("upstash-rest", "misses", 100)  # 1,000 requests
    second = _record("upstash-rest", "misses", 100, round_no=2)
    first["http_requests"], second["http_requests"] = 2000, 2020
    summaries = summarise([first, second, _record("redis", "misses", 100)])
    assert summaries[("upstash-rest", 1, "misses")].http_requests_per_request == \
        pytest.approx(2.01)
    assert summaries[("redis", 1, "misses")].http_requests_per_request is None
