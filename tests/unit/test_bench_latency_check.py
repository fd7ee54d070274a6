"""The deployed-URL latency check: percentiles, the X-Cache breakdown and the exit code."""

from __future__ import annotations

import pytest

from bench.latency_check import (
    Report, Sample, _variant, breakdown, describe, percentile, render, summary, verdict,
)


def _samples(x_cache: str, values: list[float], phase: str = "repeated") -> list[Sample]:
    return [Sample("/api/posts", phase, 200, x_cache, v) for v in values]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_describe_empty_and_full() -> None:
    assert describe([]) == {"n": 0}
    assert describe([1.0, 2.0, 3.0]) == {"n": 3, "p50": 2.0, "p95": 3.0, "p99": 3.0}


def test_verdict_passes_when_hits_are_faster() -> None:
    report = Report(_samples("MISS", [20, 25, 30], "first") + _samples("HIT", [2, 3, 4]))
    code, message = verdict(report)
    assert code == 0
    assert message.startswith("OK")


def test_verdict_fails_when_hits_are_not_faster() -> None:
    report = Report(_samples("MISS", [2, 3, 4], "first") + _samples("HIT", [3, 3, 3]))
    code, message = verdict(report)
    assert code == 1
    assert message.startswith("FAIL")


@pytest.mark.parametrize("report", [
    Report(_samples("HIT", [1, 2])),                          # no miss to compare with
    Report(_samples("", [1, 2], "first") + _samples("", [1, 2])),  # no X-Cache at all
    Report(_samples("MISS", [9], "first") + _samples("HIT", [1]), errors=["GET /: 500"]),
])
def test_verdict_cannot_tell(report: Report) -> None:
    assert verdict(report)[0] == 2


def test_breakdown_and_summary() -> None:
    report = Report(_samples("MISS", [20, 30], "first") + _samples("HIT", [1, 2, 3, 4])
                    + _samples("HIT", [5], "first"))
    assert breakdown(report.samples) == {"first": {"MISS": 2, "HIT": 1},
                                         "repeated": {"HIT": 4}}
    result = summary(report)
    assert result["by_phase"]["first"]["n"] == 3
    assert result["by_x_cache"]["HIT"]["n"] == 5
    assert result["exit_code"] == 0
    text = render(result)
    assert "By X-Cache:" in text and "OK: hits p50" in text


def test_variant_adds_limit() -> None:
    assert _variant("/api/posts", 7) == "/api/posts?limit=7"
    assert _variant("/api/jobs?remote=true", 3) == "/api/jobs?remote=true&limit=3"
    assert _variant("/api/jobs/stats", None) == "/api/jobs/stats"
