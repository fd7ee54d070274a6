"""The mixed workload's stale-read checker."""

from __future__ import annotations

from pathlib import Path

from bench.stale import check, check_dir, check_dirs, check_sources, parse_lines

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


def test_a_stale_read_is_late_only_beyond_the_grace_period() -> None:
    # Version 2 acknowledged at 200; grace 5 ms = 5000 us.
    report = check(ACKS, [(7, 1, 201), (7, 1, 5_200), (7, 1, 5_201)], grace_us=5_000)
    assert len(report.stale) == 3
    assert [s.late for s in report.stale] == [False, False, True]
    assert report.stale_beyond_grace == 1
    assert report.as_dict()["stale_beyond_grace"] == 1


def test_without_a_grace_every_stale_read_is_late() -> None:
    report = check(ACKS, [(7, 1, 201)])
    assert report.stale_beyond_grace == 1
    assert "stale_beyond_grace" not in report.as_dict()


def test_reads_on_another_instance_are_checked_against_the_writers_acks() -> None:
    writer = ([(7, 2, 200)], [(7, 2, 210)])
    reader = ([], [(7, 1, 150), (7, 1, 300), (7, 1, 9_000), (7, 2, 9_500)])
    report = check_sources({"A": writer, "B": reader}, {7: 1}, grace_us=5_000)
    assert report.writes_acknowledged == 1
    assert report.reads_checked == 5
    assert [(s.source, s.sent_us, s.late) for s in report.stale] == [
        ("B", 300, False), ("B", 9_000, True)]
    assert report.by_source == {
        "A": {"reads_checked": 1, "stale_reads": 0, "stale_beyond_grace": 0},
        "B": {"reads_checked": 4, "stale_reads": 2, "stale_beyond_grace": 1}}


def test_a_reader_alone_sees_no_writes_so_the_merge_is_what_finds_its_stale_read() -> None:
    reader = ([], [(7, 1, 9_000)])
    assert check_sources({"B": reader}, {7: 1}).ok
    assert not check_sources({"A": ([(7, 2, 200)], []), "B": reader}, {7: 1}).ok


def test_check_dirs_merges_one_directory_per_instance(tmp_path: Path) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    b.mkdir()
    (a / "thread-1.log").write_text("A 7 2 190 200\nS 7 2 250\n")
    (b / "thread-1.log").write_text("S 7 1 260\nS 7 2 270\n")
    report = check_dirs({"A": a, "B": b}, grace_us=5_000)
    assert report.writes_acknowledged == 1
    assert report.by_source["B"] == {"reads_checked": 2, "stale_reads": 1,
                                     "stale_beyond_grace": 0}
    assert report.as_dict()["by_source"]["A"]["reads_checked"] == 1
