"""The bench's wrk glue: the Lua scripts' result line and what is derived from it."""

from __future__ import annotations

import json

import pytest

from bench.wrk import MARKER, WrkError, parse_output, script_text


def _line(**overrides: object) -> str:
    data: dict[str, object] = {
        "duration_us": 2_000_000, "requests": 10_000, "bytes": 54_000_000,
        "errors": {"connect": 0, "read": 1, "write": 0, "status": 3, "timeout": 2},
        "latency_us": {"min": 100, "mean": 1500.5, "max": 90_000, "stdev": 10.0, "p50": 1200,
                       "p75": 1500, "p90": 2000, "p95": 2500, "p99": 7000, "p999": 9000},
        "counts": {"s2xx": 9990, "s3xx": 1, "s4xx": 6, "s5xx": 3, "hit": 900, "miss": 100,
                   "bypass": 5},
    }
    data.update(overrides)
    return MARKER + json.dumps(data)


def test_parse_output_converts_units_and_derives_rates() -> None:
    result = parse_output("Running 2s test\n" + _line() + "\n")
    assert result.requests == 10_000
    assert result.rps == pytest.approx(5_000)
    assert result.latency_ms["p50"] == pytest.approx(1.2)
    assert result.latency_ms["p99"] == pytest.approx(7.0)
    assert result.non_2xx == 10  # 3xx + 4xx + 5xx from the Lua counters
    assert result.socket_errors == 3  # read + timeout; "status" is not a socket error
    assert result.error_total == 13
    assert result.hit_rate == pytest.approx(0.9)


def test_parse_output_without_counters_falls_back_to_wrk_status_errors() -> None:
    result = parse_output(_line(counts={}))
    assert result.non_2xx == 3
    assert result.hit_rate is None


def test_parse_output_takes_the_last_result_line() -> None:
    first = _line(requests=1)
    last = _line(requests=2)
    assert parse_output(f"{first}\n{last}\n").requests == 2


def test_parse_output_without_a_result_line_is_an_error() -> None:
    with pytest.raises(WrkError, match="no BENCH_JSON"):
        parse_output("Running 10s test @ http://127.0.0.1:1\n  1 threads\n")


@pytest.mark.parametrize("workload", ["paths", "mixed"])
def test_scripts_share_the_common_done_and_define_request_and_response(workload: str) -> None:
    text = script_text(workload)
    assert text.index("function done(") < text.index("function request(")
    assert "function response(" in text
    assert "BENCH_JSON" in text


def test_parse_output_reads_bytes_on_the_wire_per_response() -> None:
    """wrk's ``summary.bytes`` (headers and bodies) over the responses it counted."""
    result = parse_output(_line())
    assert result.bytes_read == 54_000_000
    assert result.bytes_per_request == pytest.approx(5_400)
    assert result.as_dict()["bytes_per_request"] == pytest.approx(5_400)
    assert parse_output(_line(bytes=0)).bytes_per_request is None
