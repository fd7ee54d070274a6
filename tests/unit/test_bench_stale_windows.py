"""The stale-windows bench's pure logic: splitting at expiry, refreshes per key, the outage
probes and the targets."""

from __future__ import annotations

from typing import Any

import pytest

from bench.stale_windows_check import (
    BOUNDARY_US, Answer, Probe, answer_kind, hit_bound_ms, outage_summary, parse_log,
    parse_monitor, refresh_verdict, refreshes_per_key, split_at_expiry, targets,
)
from bench.stale_windows_report import markdown

S = 1_000_000  # microseconds


def answer(sent_s: float, latency_ms: float, x_cache: str = "HIT", path: int = 1,
           status: int = 200) -> Answer:
    return Answer(int(sent_s * S), int(latency_ms * 1000), status, x_cache, path)


def test_parse_log_reads_swr_lua_lines_and_skips_the_rest() -> None:
    lines = ["1000 250 200 HIT 1\n", "2000 900 200 STALE 2\n", "garbage\n", "3000 1 503 - 1"]
    assert parse_log(lines) == [Answer(1000, 250, 200, "HIT", 1),
                                Answer(2000, 900, 200, "STALE", 2), Answer(3000, 1, 503, "-", 1)]


def test_each_key_is_split_at_its_own_expiry_and_other_paths_are_left_out() -> None:
    expiry = {1: 30 * S, 2: 31 * S}
    answers = [answer(10, 1.0, path=1), answer(30.2, 2.0, "STALE", path=1),
               answer(30.4, 1.5, path=2),  # before path 2's expiry (by more than the boundary)
               answer(31.0, 3.0, "STALE", path=2), answer(40, 1.0, path=1),
               answer(40, 50.0, "HIT", path=3)]  # a post: not an expiring path
    split = split_at_expiry(answers, expiry)
    assert split["before"]["count"] == 2
    assert split["after"]["count"] == 3
    assert split["after"]["x_cache"] == {"HIT": 1, "STALE": 2}
    assert split["first"]["count"] == 2  # 40 s is past the first 5 s after expiry
    assert split["first_per_key"]["1"]["x_cache"] == "STALE"
    assert split["first_per_key"]["1"]["latency_ms"] == 2.0
    assert split["first_per_key"]["2"]["latency_ms"] == 3.0
    assert split["first_per_key"]["2"]["sent_after_expiry_s"] == 0.0


def test_a_keys_first_answer_after_expiry_is_its_first_that_was_not_a_fresh_hit() -> None:
    expiry = {1: 30 * S, 2: 30 * S}
    answers = [answer(29.8, 0.3, "HIT"), answer(30.1, 0.9, "STALE"), answer(30.2, 7.0, "MISS"),
               answer(30.0, 0.4, "HIT", path=2), answer(31.0, 0.5, "HIT", path=2)]
    first = split_at_expiry(answers, expiry)["first_per_key"]
    assert (first["1"]["x_cache"], first["1"]["latency_ms"]) == ("STALE", 0.9)
    assert (first["2"]["x_cache"], first["2"]["latency_ms"]) == ("HIT", 0.4)  # never stale


def test_answers_just_before_the_computed_expiry_count_as_after_it() -> None:
    expiry = {1: 30 * S}
    split = split_at_expiry([answer(30 - BOUNDARY_US / S / 2, 9.0, "STALE")], expiry)
    assert split["after"]["count"] == 1 and split["before"]["count"] == 0


def test_the_hit_bound_is_a_factor_or_an_absolute_slack_whichever_is_larger() -> None:
    assert hit_bound_ms(1.0) == 3.0    # +2 ms beats 1.5x
    assert hit_bound_ms(10.0) == 15.0  # 1.5x beats +2 ms


def test_parse_monitor_lines() -> None:
    line = r'+1733130000.123456 [0 127.0.0.1:40312] "SET" "rc:r:GET:/api/posts?limit=20" "\x00b"'
    assert parse_monitor(line) == (1733130000.123456, "127.0.0.1:40312", "SET",
                                   "rc:r:GET:/api/posts?limit=20")
    assert parse_monitor('1733130000.1 [0 lua] "set" "k\\"q" "v"') == (
        1733130000.1, "lua", "SET", 'k\\"q')
    assert parse_monitor("+OK") is None


KEYS = {"rc:r:GET:/api/posts?limit=20": "/feed1", "rc:r:GET:/api/posts?cursor=x&limit=20": "/feed2"}


def test_refreshes_are_counted_per_key_and_connection() -> None:
    sets = [(1.0, "a", "rc:r:GET:/api/posts?limit=20"), (1.1, "b", "rc:r:GET:/api/posts?limit=20"),
            (1.2, "a", "rc:r:GET:/api/posts?cursor=x&limit=20"), (1.3, "a", "rc:r:GET:/other")]
    assert refreshes_per_key(sets, KEYS) == {"/feed1": {"a": 1, "b": 1}, "/feed2": {"a": 1}}


@pytest.mark.parametrize(("per_key", "workers", "met"), [
    ({"/feed1": {"a": 1}, "/feed2": {"a": 1}}, 1, True),
    ({"/feed1": {"a": 1, "b": 1}, "/feed2": {"b": 1}}, 2, True),   # once per process
    ({"/feed1": {"a": 1, "b": 1}}, 1, False),                     # 2 in all, 1 worker
    ({"/feed1": {"a": 2}}, 2, False),                             # twice in one process
    ({"/feed1": {}, "/feed2": {"a": 1}}, 1, False),               # a key never refreshed
    ({}, 1, False),                                               # nothing measured
])
def test_exactly_one_refresh_per_key_per_process(per_key: dict[str, dict[str, int]],
                                                 workers: int, met: bool) -> None:
    stats = {"1": {"refreshes": sum(n for c in per_key.values() for n in c.values()),
                   "refresh_failures": 0}}
    assert refresh_verdict(per_key, workers, stats)["met"] is met


PER_KEY = {"/feed1": {"a": 1, "b": 1}, "/feed2": {"b": 1}}


def test_refresh_verdict_reports_the_spans_and_the_workers_counters() -> None:
    stats = {"10": {"refreshes": 1, "refresh_failures": 0},
             "11": {"refreshes": 2, "refresh_failures": 0}}
    verdict = refresh_verdict(PER_KEY, 2, stats)
    assert verdict["per_key_per_process"] == [1, 1]
    assert verdict["per_key_in_all"] == [1, 2]
    assert (verdict["stats_refreshes"], verdict["met"]) == (3, True)


@pytest.mark.parametrize("stats", [
    {"10": {"refreshes": 2, "refresh_failures": 0}},  # Redis saw a store no refresh made
    {"10": {"refreshes": 3, "refresh_failures": 1}},  # a refresh failed
])
def test_the_workers_counters_must_agree_with_redis(stats: dict[str, dict[str, int]]) -> None:
    assert refresh_verdict(PER_KEY, 2, stats)["met"] is False


@pytest.mark.parametrize(("status", "x_cache", "cache_status", "kind"), [
    (200, "HIT", "response-cache; hit; ttl=12", "hit"),
    (200, "STALE", "response-cache; hit; ttl=-5", "stale"),
    (200, "STALE", "response-cache; fwd=stale; fwd-status=503; ttl=-40", "stale-if-error"),
    (200, "MISS", "response-cache; fwd=uri-miss; stored", "miss"),
    (503, "MISS", "response-cache; fwd=uri-miss", "error"),
    (0, "", "", "error"),
])
def test_answer_kind(status: int, x_cache: str, cache_status: str, kind: str) -> None:
    assert answer_kind(status, x_cache, cache_status) == kind


def probe(group: str, status: int = 200, x_cache: str = "STALE", cache: str = "fwd=stale",
          same: bool = True, url: str = "/a") -> Probe:
    return Probe(group, url, status, x_cache, cache, 3.0, same)


def test_outage_summary_counts_errors_and_pre_write_bodies_served() -> None:
    summary = outage_summary([
        probe("current"), probe("current", 503, "MISS", "", False, "/b"),
        probe("invalidated", 503, "MISS", "", False),
        probe("invalidated", 200, "STALE", "fwd=stale", True),   # the bug the target catches
        probe("invalidated", 200, "MISS", "", False),            # new content: not a violation
    ])
    assert summary["current"]["client_errors"] == 1
    assert summary["current"]["urls"] == 2
    assert summary["current"]["kinds"] == {"stale-if-error": 1, "error": 1}
    assert summary["invalidated"]["served_before_write"] == 1
    assert summary["invalidated"]["statuses"] == {"503": 1, "200": 2}


def swr(before_p99: float = 2.0, after_p99: float = 2.5, stale: int = 10, misses: int = 0,
        first: float = 2.0) -> dict[str, Any]:
    def row(p99: float, caches: dict[str, int]) -> dict[str, Any]:
        return {"count": 100, "p50_ms": 1.0, "p99_ms": p99, "max_ms": p99, "x_cache": caches,
                "errors": 0}

    after = {"HIT": 80, "STALE": stale, **({"MISS": misses} if misses else {})}
    return {"before": row(before_p99, {"HIT": 100}), "after": row(after_p99, after),
            "first": row(after_p99, after),
            "first_per_key": {"1": {"latency_ms": first, "x_cache": "STALE", "status": 200,
                                    "sent_after_expiry_s": 0.1}}}


def outage(errors: int = 0, rescued: int = 2, served: int = 0) -> dict[str, Any]:
    return {"current (past the revalidate window)": {
                "probes": 4, "client_errors": errors, "kinds": {"stale-if-error": rescued}},
            "current (fresh)": {"probes": 2, "client_errors": 0, "kinds": {"hit": 2}},
            "invalidated": {"probes": 6, "served_before_write": served, "kinds": {"error": 6}}}


REFRESH = {"keys": 1, "per_key_per_process": [1, 1], "per_key_in_all": [1, 2],
           "stats_refreshes": 2, "stats_refresh_failures": 0, "met": True}


def met(**changes: Any) -> list[bool]:
    got = targets(changes.get("swr", swr()), changes.get("refresh", REFRESH),
                  changes.get("outage", outage()), 2)
    return [t["met"] for t in got]


def test_every_target_met() -> None:
    assert met() == [True] * 5


@pytest.mark.parametrize(("changes", "failed"), [
    ({"swr": swr(after_p99=4.1)}, [0]),              # above 2.0 + 2 ms
    ({"swr": swr(stale=0)}, [0]),                    # the stale window never answered
    ({"swr": swr(first=4.5)}, [1]),                  # a key's first answer waited
    ({"swr": swr(misses=1)}, [1]),                   # a miss after the TTL
    ({"refresh": {**REFRESH, "met": False}}, [2]),
    ({"outage": outage(errors=1)}, [3]),
    ({"outage": outage(rescued=0)}, [3]),            # stale-if-error never exercised
    ({"outage": outage(served=1)}, [4]),
])
def test_each_target_fails_on_its_own(changes: dict[str, Any], failed: list[int]) -> None:
    assert [i for i, ok in enumerate(met(**changes)) if not ok] == failed


def test_markdown_has_the_targets_table_with_met_yes_or_no() -> None:
    run = {"workers": 2, "threads": 4, "rate": 200, "seconds": 50.0,
           "wrk": {"requests": 9000, "rps": 180.0, "errors": {"status": 0, "read": 0}},
           "miss_ms": {"p50": 20.0, "max": 40.0}, "swr": swr(),
           "refreshes_per_key": {"/api/posts?limit=20": {"127.0.0.1:1": 1}},
           "post_stores_during_load": 0,
           "worker_stats": {"42": {"hits": 1, "misses": 0, "stale": 2, "stale_on_error": 0,
                                   "refreshes": 1, "refresh_failures": 0, "stores": 1}},
           "outage": {"invalidated": {"urls": 1, "probes": 2, "kinds": {"error": 2},
                                      "statuses": {"503": 2}, "client_errors": 2,
                                      "served_before_write": 0, "p50_ms": 3000.0,
                                      "max_ms": 3100.0}},
           "outage_timing": {"pg_stop_s": 0.5, "probes_from_stop_s": 4.0, "probing_s": 7.0},
           "after_restart": {"edited_post_status": 200, "shows_the_edit": True},
           "outage_worker_stats": {}}
    payload = {"meta": {"started": "2026-12-02 10:00 UTC", "command": "python -m bench.x",
                        "machine": {"commit": "abc", "cpu": "x", "cores": 2, "python": "3"},
                        "seed": "seeded", "feed_ttl": 30, "stale_while_revalidate": 30,
                        "stale_if_error": 600, "database_retry_seconds": 3.0, "raw_dir": "r"},
               "targets": [{"name": "t1", "measured": "m", "required": "0", "met": True},
                           {"name": "t2", "measured": "m", "required": "0", "met": False}],
               "runs": [run]}
    text = markdown(payload)
    assert "| t1 | m | 0 | yes |" in text
    assert "| t2 | m | 0 | **no** |" in text
    assert "## 2 workers" in text and "`/api/posts?limit=20`: 1" in text
