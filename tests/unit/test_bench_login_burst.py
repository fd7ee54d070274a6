"""The login burst's and the connections bench's parsers and summaries."""

from __future__ import annotations

import pytest

from bench.connections import backlog_notes, met, variant_env
from bench.login_burst import (VARIANTS, Login, parse_response_head, parse_timed,
                               relevant_settings, summarise_logins, window_stats)
from bench.login_burst_report import CONTROL, markdown
from bench.resources import counter_delta, parse_netstat, parse_ss_backlog, percentile


def test_parse_timed_skips_malformed_lines() -> None:
    assert parse_timed(["100 2000 200\n", "bad line\n", "101 3000\n", "102 4000 503\n"]) == [
        (100, 2000, 200), (102, 4000, 503)]


def test_window_stats_takes_requests_sent_in_the_window() -> None:
    samples = [(t, 1000 * (t + 1), 200) for t in range(10)]  # latency 1..10 ms
    samples.append((5, 50_000, 500))
    stats = window_stats(samples, 5, 8)  # sent at 5, 5, 6, 7
    assert stats["requests"] == 4
    assert stats["non_2xx"] == 1
    assert stats["p50"] == 7.0 and stats["max"] == 50.0


def test_window_stats_of_an_empty_window() -> None:
    stats = window_stats([], 0, 1_000_000)
    assert stats["requests"] == 0 and stats["p99"] == 0.0


@pytest.mark.parametrize(("values", "pct", "expected"), [
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50, 5),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99, 10),
    (list(range(1, 201)), 99, 198),
    ([7], 99, 7),
    ([], 99, 0),
])
def test_percentile_nearest_rank(values: list[int], pct: float, expected: float) -> None:
    assert percentile(values, pct) == expected


def test_parse_response_head() -> None:
    raw = (b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\ncontent-type: application/json"
           b"\r\n\r\n{\"error\": {}}")
    assert parse_response_head(raw) == (429, {"retry-after": "3",
                                              "content-type": "application/json"})
    assert parse_response_head(b"") == (0, {})
    assert parse_response_head(b"garbage\r\n\r\n") == (0, {})


def test_summarise_logins_counts_outcomes_and_retry_after() -> None:
    logins = [Login(True, 200, sent=0.0, answered=0.1),
              Login(True, 429, "2", sent=0.0, answered=0.01),
              Login(True, 429, None, sent=0.0, answered=0.01),
              Login(False, 401, sent=0.0, answered=0.2),
              Login(False, 200, sent=0.0, answered=0.2),   # a wrong password let in
              Login(True, 0, error="TimeoutError")]
    summary = summarise_logins(logins)
    assert summary["by_status"] == {"200": 2, "401": 1, "429": 2, "error: TimeoutError": 1}
    assert summary["correct_password"] == {"200": 1, "429": 2, "error": 1}
    assert summary["wrong_password"] == {"200": 1, "401": 1}
    assert summary["status_429"] == 2 and summary["status_429_with_retry_after"] == 1
    assert summary["retry_after_values"] == ["2"]
    assert summary["unexpected"] == 1


def test_variants_name_settings_the_service_reads() -> None:
    env = {"SECRET_KEY": "x" * 32, **VARIANTS["unguarded"]}
    settings = relevant_settings(env)
    assert settings["auth_max_concurrent_hashes"] == 6
    assert settings["login_rate_per_username"] == VARIANTS["unguarded"]["LOGIN_RATE_PER_USERNAME"]
    assert not any("secret" in name for name in settings)


NETSTAT = """TcpExt: SyncookiesSent ListenOverflows ListenDrops
TcpExt: 5 120 121
IpExt: InNoRoutes
IpExt: 0
"""


def test_parse_netstat_and_delta() -> None:
    counters = parse_netstat(NETSTAT)
    assert counters == {"SyncookiesSent": 5, "ListenOverflows": 120, "ListenDrops": 121}
    assert counter_delta({"ListenOverflows": 100}, {"ListenOverflows": 120}) == {
        "ListenOverflows": 20}


def test_parse_ss_backlog_reads_send_q_of_the_listening_port() -> None:
    text = ("LISTEN 0      4096       127.0.0.1:8000       0.0.0.0:*\n"
            "LISTEN 3      100        127.0.0.1:18000      0.0.0.0:*\n"
            "ESTAB  0      0          127.0.0.1:8000       127.0.0.1:5000\n")
    assert parse_ss_backlog(text, 8000) == 4096
    assert parse_ss_backlog(text, 18000) == 100
    assert parse_ss_backlog(text, 9000) is None


def run(p99: float, errors: int = 0) -> dict:
    return {"latency_ms": {"p99": p99}, "error_total": errors}


def test_connections_target() -> None:
    assert met(run(999.0))
    assert not met(run(1000.1))
    assert not met(run(10.0, errors=1))


def test_variant_env_and_backlog_notes() -> None:
    assert variant_env("default") == {}
    assert variant_env("100") == {"BACKLOG": "100"}
    same = [{"backlog_env": "default", "effective_backlog": 100},
            {"backlog_env": "100", "effective_backlog": 100}]
    assert backlog_notes(same)
    differ = [{"backlog_env": "default", "effective_backlog": 2048},
              {"backlog_env": "100", "effective_backlog": 100}]
    assert backlog_notes(differ) == []


def test_parse_ss_owners_counts_connections_per_pid_on_the_port() -> None:
    from bench.resources import parse_ss_owners

    text = ('0 0 127.0.0.1:8000 127.0.0.1:40001 users:(("python",pid=11,fd=30))\n'
            '0 0 127.0.0.1:8000 127.0.0.1:40002 users:(("python",pid=12,fd=31))\n'
            '0 0 127.0.0.1:8000 127.0.0.1:40003 users:(("python",pid=11,fd=32))\n'
            '0 0 127.0.0.1:40001 127.0.0.1:8000 users:(("wrk",pid=99,fd=5))\n')
    assert parse_ss_owners(text, 8000) == {11: 2, 12: 1}


def test_parse_softnet_drops_sums_the_hex_second_column() -> None:
    from bench.resources import parse_softnet_drops

    assert parse_softnet_drops("0000a000 00000002 00000000\n0000b000 0000000a 00000001\n") == 12


def test_parse_ss_accept_queue_reads_recv_q_of_the_listening_port() -> None:
    from bench.resources import parse_ss_accept_queue

    text = ("LISTEN 513    2048       127.0.0.1:8000       0.0.0.0:*\n"
            "LISTEN 0      100        127.0.0.1:18000      0.0.0.0:*\n")
    assert parse_ss_accept_queue(text, 8000) == 513
    assert parse_ss_accept_queue(text, 18000) == 0
    assert parse_ss_accept_queue(text, 9000) is None


def _run(variant: str, workers: int, first_p99: float) -> dict[str, object]:
    window = {"requests": 10, "rps": 10.0, "p50": 1.0, "p99": 2.0, "max": 3.0, "non_2xx": 1,
              "seconds": 1.0}
    first = {**window, "p99": first_p99}
    return {"variant": variant, "workers": workers, "burst_seconds": 1.0, "p99_ratio": 1.0,
            "windows": {"before": window, "during": window, "first_second": first,
                        "after": window},
            "rss_mib": {"before_mean": 1, "peak_during": 2, "peak_minus_before": 1},
            "logins": summarise_logins([Login(True, 200, sent=0.0, answered=0.1)]),
            "settings": {}, "warm": "-"}


def test_report_compares_the_first_second_with_the_control_of_the_same_workers() -> None:
    meta = {"started": "now", "command": "c", "machine": {"commit": "x"}, "seed": "s",
            "threads": 16, "rate": 1500, "baseline_s": 15, "logins": 200, "wrong_every": 10,
            "notes": []}
    text = markdown([_run("defaults", 1, 6.0), _run(CONTROL, 1, 4.0),
                     _run("defaults", 2, 3.0)], meta)
    rows = [line for line in text.splitlines() if line.startswith("| defaults")]
    assert "| 6.00 | 3.00 | 1.50x |" in rows[0]
    assert "| 3.00 | 3.00 | - |" in rows[1]  # no control at 2 workers
    # The first second is a view of the other windows' requests: its non-2xx are not re-counted.
    assert "| 3 | 1 | 2 | 1 |" in rows[0]
