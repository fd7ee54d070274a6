"""The invalidation delay probe's arithmetic and the two-instance helpers."""

from __future__ import annotations

import pytest

from bench.instances import combine, rotated
from bench.probe import ProbeRead, ProbeWrite, merge, percentile, summarise
from bench.wrk import WrkResult


@pytest.mark.parametrize(("values", "p", "expected"), [
    ([5.0], 50, 5.0),
    ([5.0], 99, 5.0),
    ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
    ([4.0, 3.0, 2.0, 1.0], 100, 4.0),
    ([float(i) for i in range(1, 201)], 99, 198.0),
    ([float(i) for i in range(1, 201)], 50, 100.0),
    ([float(i) for i in range(1, 101)], 99, 99.0),
])
def test_percentile_is_nearest_rank(values: list[float], p: float, expected: float) -> None:
    assert percentile(values, p) == expected


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def _write(*reads: tuple[float, float, bool], warm: str = "HIT") -> ProbeWrite:
    return ProbeWrite(1, [ProbeRead(*r) for r in reads], warm_x_cache=warm)


def test_the_delay_ends_with_the_first_read_showing_the_write() -> None:
    write = _write((0.0001, 0.0011, False), (0.0012, 0.0020, True), (0.0021, 0.0030, True))
    assert write.delay_ms == pytest.approx(2.0)
    assert _write((0.0, 0.001, False)).delay_ms is None


def test_old_reads_are_counted_by_when_they_were_sent() -> None:
    write = _write((0.0001, 0.001, False), (0.0049, 0.0055, False), (0.0051, 0.006, False),
                   (0.007, 0.008, True))
    assert write.old_reads() == 3
    assert write.old_reads(5.0) == 1


def test_summary_reports_percentiles_and_late_old_reads() -> None:
    writes = [_write((0.0, d / 1000, True)) for d in range(1, 101)]
    writes.append(_write((0.0060, 0.0070, False), (0.0071, 0.0080, True), warm="MISS"))
    writes.append(_write((0.0001, 0.001, False), (0.0011, 2.1, False)))  # never seen
    out = summarise(writes)
    assert out["writes"] == 102
    assert out["seen"] == 101
    assert out["never_seen"] == 1
    assert out["warm_hits"] == 101
    assert out["old_reads_after_ack"] == 3
    assert out["late_old_reads"] == 1  # the one sent 6 ms after (the others within 2 ms)
    assert out["p50_ms"] == pytest.approx(50.0)  # 51st of 1..100 and an 8
    assert out["p99_ms"] == pytest.approx(99.0)  # the 100th of 101
    assert out["max_ms"] == pytest.approx(100.0)
    assert len(out["delays_ms"]) == 101


def test_rounds_merge_into_one_distribution() -> None:
    first = summarise([_write((0.0, d / 1000, True)) for d in (1, 2, 3)])
    second = summarise([_write((0.0, 0.050, True)), _write((0.006, 0.007, False))])
    out = merge([first, second])
    assert out["writes"] == 5
    assert out["seen"] == 4
    assert out["late_old_reads"] == 1
    assert out["p50_ms"] == pytest.approx(2.0)
    assert out["max_ms"] == pytest.approx(50.0)
    assert "p50_ms" not in merge([summarise([])])


def test_rotated_starts_the_reader_elsewhere() -> None:
    assert rotated(["a", "b", "c", "d"], 1) == ["b", "c", "d", "a"]
    assert rotated(["a", "b"], 5) == ["b", "a"]
    assert rotated([], 3) == []


def test_combined_runs_add_up_and_keep_the_worse_latency() -> None:
    a = WrkResult(1000, 8.0, {"p50": 1.0, "p99": 9.0}, {"connect": 0, "status": 0},
                  {"hit": 900, "miss": 50, "writes": 50, "s2xx": 1000})
    b = WrkResult(3000, 8.2, {"p50": 2.0, "p99": 4.0}, {"connect": 1, "status": 0},
                  {"hit": 2950, "miss": 50, "s2xx": 2999, "s5xx": 1})
    out = combine({"A": a, "B": b})
    assert out["requests"] == 4000
    assert out["rps"] == pytest.approx(1000 / 8.0 + 3000 / 8.2)
    assert out["latency_ms"] == {"p50": 2.0, "p99": 9.0}
    assert out["counts"]["hit"] == 3850
    assert out["counts"]["writes"] == 50
    assert out["errors"] == {"connect": 1, "status": 0}
    assert out["error_total"] == 2
    assert out["hit_rate"] == pytest.approx(3850 / 3950)


def test_the_send_delay_says_when_the_first_new_read_left() -> None:
    write = _write((0.0001, 0.0011, False), (0.0012, 0.0400, True))
    assert write.sent_delay_ms == pytest.approx(1.2)
    out = summarise([write, _write((0.00005, 0.030, True))])
    assert out["sent_p50_ms"] == pytest.approx(0.05)
    assert out["sent_max_ms"] == pytest.approx(1.2)
    assert merge([out])["sent_p99_ms"] == pytest.approx(1.2)
