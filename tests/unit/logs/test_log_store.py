"""The log store and the output caps in front of it (plughost.logs), without a server."""

from __future__ import annotations

import io
import itertools
import logging
from pathlib import Path

import pytest

from plughost.logs import capture
from plughost.logs.output import OutputLimits, ReplicaLogs
from plughost.logs.query import parse_since, window
from plughost.logs.store import LogLimits, LogStore
from plughost.logs.tags import LOG_TAG, STDOUT_TAG, split_tag
from plughost.replica.tagging import TaggedFormatter, TaggedStdout


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_times_are_unique_and_increasing_even_within_one_clock_tick(tmp_path: Path) -> None:
    store = LogStore(tmp_path, clock=lambda: 5.0)
    for i in range(100):
        store.append(1, "r1-1", "stdout", f"line {i}")
    lines = store.read([1])
    assert [e.line for e in lines] == [f"line {i}" for i in range(100)]
    assert all(a.time < b.time for a, b in itertools.pairwise(lines))


def test_a_release_never_keeps_more_than_its_cap_and_says_so(tmp_path: Path) -> None:
    store = LogStore(tmp_path, LogLimits(release_cap_bytes=20_000))
    for i in range(2000):
        store.append(7, "r7-1", "stdout", f"{i:05d} " + "y" * 40)
    store.flush()
    on_disk = sum(f.stat().st_size for f in (tmp_path / "r7").glob("*.jsonl"))
    assert on_disk <= 20_000 + 200
    lines = store.read([7])
    assert lines[-1].line.startswith("01999")
    markers = [e for e in lines if e.dropped]
    assert markers and "log truncated" in markers[-1].line
    kept, truncated = window(lines, None, 10)
    assert truncated is True and len(kept) == 10


def test_the_folder_stays_under_its_total_cap_by_dropping_the_oldest_releases(
    tmp_path: Path,
) -> None:
    store = LogStore(tmp_path, LogLimits(release_cap_bytes=10_000, total_cap_bytes=25_000))
    for release in range(1, 6):
        for i in range(400):
            store.append(release, f"r{release}-1", "stdout", "z" * 60 + str(i))
        store.flush()
    total = sum(f.stat().st_size for f in tmp_path.glob("r*/*.jsonl"))
    assert total <= 25_000 + 10_000
    assert not (tmp_path / "r1").exists()
    assert store.read([5])


def test_a_full_write_queue_drops_and_counts_instead_of_waiting(tmp_path: Path) -> None:
    store = LogStore(tmp_path, LogLimits(pending_cap_bytes=10_000))
    accepted = sum(store.append(1, "r", "stdout", "q" * 100) is not None for _ in range(500))
    assert accepted < 500
    store.flush()
    store.append(1, "r", "stdout", "after")
    lines = store.read([1])
    assert any(e.dropped and "lines dropped" in e.line for e in lines)
    assert lines[-1].line == "after"


def test_lines_survive_a_new_store_on_the_same_folder(tmp_path: Path) -> None:
    first = LogStore(tmp_path)
    first.append(3, "r3-1", "stderr", "before restart")
    first.close()
    second = LogStore(tmp_path)
    second.append(3, "r3-2", "stdout", "after restart")
    assert [e.line for e in second.read([3])] == ["before restart", "after restart"]


def test_output_is_rate_limited_per_release_and_a_marker_counts_the_drop(tmp_path: Path) -> None:
    clock = Clock()
    logs = ReplicaLogs(LogStore(tmp_path), OutputLimits(
        rate_bytes_per_s=1000, burst_bytes=1000, echo_lines=0), clock=clock)
    key = ("ns", "p_1_0_0")
    for _ in range(100):
        logs.emit(key, 1, "r1-1", "a" * 99)  # 100 bytes each: 10 fit the burst
    logs.emit(key, 2, "r2-1", "other release is not limited by release 1")
    clock.now += 1.0
    logs.emit(key, 1, "r1-1", "later")
    lines = logs.store.read([1])
    assert sum(e.line == "a" * 99 for e in lines) == 10
    assert "90 lines" in lines[-2].line and lines[-2].dropped
    assert lines[-1].line == "later"
    assert logs.store.read([2])[0].line.startswith("other release")


def test_long_lines_are_cut_and_streams_come_from_tags(tmp_path: Path) -> None:
    logs = ReplicaLogs(LogStore(tmp_path), OutputLimits(max_line_bytes=10, echo_lines=0))
    logs.emit(("ns", "p"), 1, "r1-1", STDOUT_TAG + "0123456789abcdef")
    logs.emit(("ns", "p"), 1, "r1-1", LOG_TAG + "INFO x: hi")
    logs.emit(("ns", "p"), 1, "r1-1", "raw")
    a, b, c = logs.store.read([1])
    assert (a.stream, a.line) == ("stdout", "0123456789 [... 6 bytes cut]")
    assert (b.stream, b.line) == ("log", "INFO x: hi")
    assert (c.stream, c.line) == ("stderr", "raw")


def test_the_server_log_gets_a_small_excerpt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    logs = ReplicaLogs(LogStore(tmp_path), OutputLimits(echo_lines=3, echo_window_s=60), clock)
    with caplog.at_level(logging.INFO, logger="plughost.replica.excerpt"):
        for i in range(50):
            logs.emit(("ns", "p"), 1, "r1-1", f"line {i}")
        clock.now += 61
        logs.emit(("ns", "p"), 1, "r1-1", "next window")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 5
    assert "47 more output lines" in messages[3] and messages[4].endswith("next window")


def test_capture_takes_lines_only_inside_a_release_context() -> None:
    got: list[tuple[int, str]] = []
    logger = logging.getLogger(capture.OUTPUT_LOGGER)
    handler_records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            handler_records.append(record)

    keep = Keep()
    logger.addHandler(keep)
    installed = capture.install()
    try:
        token = capture.REPLICA_OUTPUT.set(lambda pid, line: got.append((pid, line)))
        logger.info("replica %d: %s", 42, "captured")
        capture.REPLICA_OUTPUT.reset(token)
        logger.info("replica %d: %s", 43, "passed through")
    finally:
        capture.uninstall(installed)
        logger.removeHandler(keep)
    assert got == [(42, "captured")]
    assert [r.getMessage() for r in handler_records] == ["replica 43: passed through"]


def test_worker_tags_every_printed_line_and_log_line() -> None:
    out = io.StringIO()
    tagged = TaggedStdout(out)
    print("a", "b", file=tagged)  # type: ignore[arg-type]
    tagged.write("c\nd")
    tagged.write("e\n")
    assert [split_tag(line) for line in out.getvalue().split("\n") if line] == [
        ("stdout", "a b"), ("stdout", "c"), ("stdout", "de")]
    record = logging.LogRecord("x", logging.INFO, "f", 1, "one\ntwo", None, None)
    text = TaggedFormatter("%(message)s").format(record)
    assert [split_tag(line) for line in text.split("\n")] == [("log", "one"), ("log", "two")]


def test_since_accepts_iso_times_and_ages() -> None:
    assert parse_since("1970-01-01T00:00:10Z") == 10.0
    assert parse_since("1970-01-01T00:00:10") == 10.0
    assert parse_since("10m", now=1000.0) == 400.0
    assert parse_since(None) is None
    # older than the epoch: every line, and a cursor that can be written back as ISO
    assert parse_since("838078.08d", now=1000.0) == 0.0
    assert parse_since("0001-01-01T00:00:00Z") == 0.0
    from plughost.errors import BadRequestError

    with pytest.raises(BadRequestError):
        parse_since("soon")
    with pytest.raises(BadRequestError):  # the document's pattern refuses it too
        parse_since("")
