"""The soak's pure logic: baseline comparison, error lines by restart window, probe summaries."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.soak_check import (MIB, Probe, Snapshot, Tolerance, compare, count_5xx,
                              first_success_after, outage, parse_errors, probe_answers,
                              split_by_window)


def snap(rss_mib: float = 300, fds: int = 100, pg: int | None = 10,
         redis: int | None = 2) -> Snapshot:
    return Snapshot("x", 0.0, int(rss_mib * MIB), fds, 5, pg, redis)


def by_name(checks: list) -> dict[str, bool]:
    return {c.name: c.ok for c in checks}


def test_identical_snapshots_pass_every_check() -> None:
    assert all(by_name(compare(snap(), snap())).values())


@pytest.mark.parametrize(("final_mib", "ok"), [
    (300 + 60, True),      # 20% of 300 MiB = 60 MiB > 30 MiB: the fraction applies
    (300 + 60.5, False),
    (250, True),           # less memory than the baseline is never a leak
])
def test_rss_headroom_is_the_larger_of_fraction_and_mib(final_mib: float, ok: bool) -> None:
    assert by_name(compare(snap(rss_mib=300), snap(rss_mib=final_mib)))[
        "service RSS (MiB)"] is ok


def test_rss_headroom_is_at_least_the_absolute_mib_for_a_small_process() -> None:
    # 20% of 100 MiB = 20 MiB < 30 MiB: the absolute headroom applies.
    checks = by_name(compare(snap(rss_mib=100), snap(rss_mib=129)))
    assert checks["service RSS (MiB)"]
    assert not by_name(compare(snap(rss_mib=100), snap(rss_mib=131)))["service RSS (MiB)"]


@pytest.mark.parametrize(("final", "ok"), [(104, True), (96, True), (105, False), (95, False)])
def test_fds_within_the_tolerance_either_way(final: int, ok: bool) -> None:
    assert by_name(compare(snap(fds=100), snap(fds=final)))["service open fds"] is ok


@pytest.mark.parametrize(("final", "ok"), [(12, True), (8, True), (13, False), (7, False)])
def test_postgres_connections_within_two(final: int, ok: bool) -> None:
    assert by_name(compare(snap(pg=10), snap(pg=final)))["PostgreSQL connections"] is ok


@pytest.mark.parametrize(("final", "ok"), [(2, True), (3, False), (1, False), (None, False)])
def test_redis_clients_must_be_equal(final: int | None, ok: bool) -> None:
    assert by_name(compare(snap(redis=2), snap(redis=final)))["Redis clients"] is ok


def test_an_unreadable_baseline_fails_its_check() -> None:
    assert not by_name(compare(snap(pg=None), snap(pg=10)))["PostgreSQL connections"]


def test_tolerance_is_configurable() -> None:
    strict = Tolerance(rss_mib=0, rss_fraction=0, fds=0, pg=0, redis=0)
    assert not by_name(compare(snap(fds=100), snap(fds=101), strict))["service open fds"]


def test_parse_errors_reads_soak_lua_lines_and_skips_others() -> None:
    lines = ["E 500 1000000 1002000 GET /api/posts?limit=10\n",
             "E 503 2000000 2000500 PATCH /api/posts/7\n",
             "A 7 3 1 2\n", "garbage\n", "E x 1 2 GET /\n"]
    errors = parse_errors(lines)
    assert [(e.status, e.sent_us, e.request) for e in errors] == [
        (500, 1000000, "GET /api/posts?limit=10"), (503, 2000000, "PATCH /api/posts/7")]


def test_split_by_window_counts_requests_in_flight_during_the_window() -> None:
    errors = parse_errors([
        "E 500 10000000 10100000 GET /a\n",   # 10 s - 10.1 s: inside [9, 12]
        "E 500 8900000 9000500 GET /b\n",     # sent before 9 s, answered after: inside
        "E 500 12500000 12600000 GET /c\n",   # 12.5 s: outside
        "E 500 8000000 8500000 GET /d\n",     # answered before the window began: outside
        "E 404 20000000 20000100 GET /e\n",   # 20 s: inside [19, 21]
    ])
    result = split_by_window(errors, {"pg": (9.0, 12.0), "redis": (19.0, 21.0)})
    assert result == {"pg": Counter({500: 2}), "redis": Counter({404: 1}),
                      "outside": Counter({500: 2})}
    assert count_5xx(result["pg"]) == 2 and count_5xx(result["redis"]) == 0


def probes() -> list[Probe]:
    return [Probe("read", 1.0, 0.01, 200, ""),
            Probe("read", 2.0, 0.01, 500, '{"error": 500}'),
            Probe("read", 2.5, 0.01, 0, "", "ConnectionResetError"),
            Probe("read", 3.0, 0.01, 200, ""),
            Probe("write", 3.5, 0.01, 200, "")]


def test_first_success_after() -> None:
    assert first_success_after(probes(), "read", 1.5) == 3.0
    assert first_success_after(probes(), "write", 4.0) is None


def test_probe_answers_counts_each_distinct_answer_in_the_window() -> None:
    assert probe_answers(probes(), 1.5, 3.0) == {
        "read": {'500 {"error": 500}': 1, "error: ConnectionResetError": 1, "200 ": 1}}


def test_outage_spans_failed_probes_relative_to_the_start() -> None:
    assert outage(probes(), "read", 1.0) == (1.0, 1.5)
    assert outage(probes(), "write", 0.0) is None
