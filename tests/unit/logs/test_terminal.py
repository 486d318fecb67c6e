"""Terminal control in replica output (plughost.logs.terminal): escaped where lines are kept
(the store, the logs API, its stream), stripped where the CLI prints, lines cut to a bound."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plughost.backends.local.output import LineSplitter
from plughost.logs import query
from plughost.logs.output import OutputLimits, ReplicaLogs
from plughost.logs.store import LogLine, LogStore
from plughost.logs.tags import STDOUT_TAG
from plughost.logs.terminal import bounded_line, cut_line, escape_controls, strip_controls

CLEAR = "\x1b[2J\x1b[H"
TITLE = "\x1b]0;pwned title\x07"
HOSTILE = f"a{CLEAR}b{TITLE}c\r\x08\x7f\x9b31m\x1bPdcs\x1b\\\u202eevil\x00tab\there"
RAW_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_escaping_makes_every_control_visible_and_keeps_the_rest() -> None:
    out = escape_controls(HOSTILE)
    assert not RAW_CONTROL.search(out)
    assert out.startswith("a\\x1b[2J\\x1b[Hb\\x1b]0;pwned title\\x07c\\x0d\\x08\\x7f\\x9b31m")
    assert "\\u202eevil\\x00tab\there" in out  # a tab stays
    assert escape_controls(out) == out  # idempotent: read-time escaping never doubles
    plain = "nothing to see: C:\\path\\x41 {json} é 漢"
    assert escape_controls(plain) is plain


def test_stripping_removes_sequences_whole() -> None:
    assert strip_controls(HOSTILE) == "abcevil" + "tab\there"
    assert strip_controls("red \x1b[1;31mALERT\x1b[0m done") == "red ALERT done"
    assert strip_controls("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\") == "link"
    assert strip_controls("unterminated \x1b]0;title") == "unterminated "
    assert strip_controls("one\x1b[2K\ntwo\r", newlines=True) == "one\ntwo"
    assert strip_controls("no newline kept\n") == "no newline kept"


@pytest.mark.parametrize("size", [100, 16384, 10 * 1024 * 1024], ids=["small", "16k", "10m"])
def test_lines_are_cut_to_the_bound_with_a_marker(size: int) -> None:
    line = ("é\x1b" * size)[:size]
    out = bounded_line(line, 4096)
    head, _, marker = out.partition(" [... ")
    if size <= 4096 // 4:
        assert out == escape_controls(line)
        return
    assert len(head.encode()) <= 4096 and marker.endswith(" bytes cut]")
    assert not RAW_CONTROL.search(out)
    assert cut_line("x" * 10, 4) == "xxxx [... 6 bytes cut]"
    assert cut_line("éé", 3) == "é [... 2 bytes cut]"  # never half a character


def test_replica_lines_are_kept_escaped_and_cut(tmp_path: Path) -> None:
    logs = ReplicaLogs(LogStore(tmp_path), OutputLimits(max_line_bytes=1024, echo_lines=0))
    logs.emit(("ns", "p"), 1, "r1-1", STDOUT_TAG + HOSTILE)
    logs.emit(("ns", "p"), 1, "r1-1", "x" * 5000)
    seen: list[LogLine] = []
    logs.follow(("ns", "p"), "t", seen.append)
    logs.emit(("ns", "p"), 1, "r1-1", CLEAR + "followed")
    first, long, followed = logs.store.read([1])
    assert first.stream == "stdout" and first.line == escape_controls(HOSTILE)
    assert long.line == "x" * 1024 + " [... 3976 bytes cut]"
    assert seen[0].line == followed.line == "\\x1b[2J\\x1b[Hfollowed"
    assert not any(RAW_CONTROL.search(e.line) for e in logs.store.read([1]))


def test_the_wire_escapes_lines_stored_raw_before() -> None:
    entry = LogLine(1.0, 1, "r1-1", "stdout", f"old{TITLE}line")
    assert query.wire(entry)["line"] == "old\\x1b]0;pwned title\\x07line"


def test_a_replica_start_error_carries_its_last_lines_escaped() -> None:
    splitter = LineSplitter(pid=1)
    splitter.feed(STDOUT_TAG.encode() + HOSTILE.encode() + b"\n" + b"z" * 70_000)
    splitter.finish()
    assert splitter.tail[0] == escape_controls(HOSTILE)
    assert all(not RAW_CONTROL.search(t) and len(t) <= 4096 for t in splitter.tail)


def test_a_streams_first_window_is_kept_small() -> None:
    lines = [LogLine(float(i), 1, "r1-1", "stdout", f"{i:04d}" + "x" * 996) for i in range(100)]
    newest, left = query.cap_window(lines, 10 * 1064, keep_newest=True)
    assert left == 90 and [e.line[:4] for e in newest] == [f"{i:04d}" for i in range(90, 100)]
    oldest, left = query.cap_window(lines, 10 * 1064, keep_newest=False)
    assert left == 90 and oldest == lines[:10]
    one, left = query.cap_window(lines[:1], 10, keep_newest=True)
    assert one == lines[:1] and left == 0  # a line longer than the cap still goes alone
