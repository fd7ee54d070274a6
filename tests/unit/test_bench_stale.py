"""The mixed workload's stale-read checker."""

from __future__ import annotations

from pathlib import Path

from bench.stale import check, check_dir, parse_lines

# (post id, version, time of acknowledgement)
ACKS = [(7, 1, 100), (7, 2, 200), (9, 1, 150)]


def test_a_read_sent_after_an_ack_must_show_that_version_or_newer() -> None:
    report = check(ACKS, [(7, 2, 250), (7, 3, 250)])
    assert report.ok
    assert report.reads_checked == 2
    assert report.writes_acknowledged == 3


def test_an_older_version_after_the_ack_is_stale() -> None:
    report = check(ACKS, [(7, 1, 201)])
    assert not report.ok
    [stale] = report.stale
    assert (stale.post_id, stale.seen, stale.expected, stale.sent_us) == (7, 1, 2, 201)


def test_a_read_overlapping_the_write_may_show_the_previous_version() -> None:
    # Sent at 199, before version 2 was acknowledged at 200: either version is correct.
    assert check(ACKS, [(7, 1, 199)]).ok
    # Sent at exactly the acknowledgement time: not "after" it.
    assert check(ACKS, [(7, 1, 200)]).ok


def test_acks_are_sorted_by_time_whatever_the_log_order() -> None:
    report = check(list(reversed(ACKS)), [(7, 1, 300)])
    assert [s.expected for s in report.stale] == [2]


def test_base_versions_count_as_acknowledged_before_the_load() -> None:
    base = {7: 1_000_000, 9: 1_000_000}
    assert check([], [(9, 999_999, 5)], base).stale
    assert check([], [(9, 1_000_000, 5)], base).ok
    # Writes during the run raise the bar above the base.
    assert check([(9, 1_000_001, 10)], [(9, 1_000_000, 11)], base).stale


def test_reads_of_posts_never_written_expect_nothing() -> None:
    assert check(ACKS, [(12, 0, 999)]).ok


def test_parse_lines_ignores_garbage() -> None:
    acks, reads = parse_lines(["A 7 2 190 200", "S 7 1 250", "", "A 7 x", "X 1 2 3",
                               "S 1 2"])
    assert acks == [(7, 2, 200)]
    assert reads == [(7, 1, 250)]


def test_check_dir_reads_every_thread_log(tmp_path: Path) -> None:
    (tmp_path / "thread-1.log").write_text("A 7 2 190 200\nS 9 1 300\n")
    (tmp_path / "thread-2.log").write_text("S 7 1 260\nS 7 2 270\n")
    (tmp_path / "other.txt").write_text("S 7 0 999\n")
    report = check_dir(tmp_path)
    assert report.writes_acknowledged == 1
    assert report.reads_checked == 3
    assert [(s.post_id, s.seen) for s in report.stale] == [(7, 1)]
    assert report.as_dict()["stale_reads"] == 1
