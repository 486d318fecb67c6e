"""FileTail owns its two descriptors: it alone closes them, once, whichever way it stops."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from plughost.backends.local.output import FileTail, OutputPump, position_path
from plughost.server import fdcheck
from plughost.server.fdcheck import FAILED_CLOSE_PREFIX


@pytest.fixture
def closes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Every descriptor os.close is asked to close, in order (the real close still runs)."""
    seen: list[int] = []
    real = os.close

    def counting(fd: int) -> None:
        seen.append(fd)
        real(fd)

    monkeypatch.setattr(os, "close", counting)
    yield seen


def _open_fds() -> set[int]:
    """The descriptors open now (not the one the listing itself used)."""
    return {int(name) for name in os.listdir("/proc/self/fd") if _is_open(int(name))}


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _output(tmp_path: Path, text: bytes = b"one\ntwo\n") -> Path:
    out = tmp_path / "r1.out"
    out.write_bytes(text)
    return out


def test_close_reads_the_rest_and_closes_both_files_once(
    tmp_path: Path, closes: list[int]
) -> None:
    before = _open_fds()
    tail = FileTail(_output(tmp_path), 7)
    tail.close()
    tail.close()
    assert list(tail.tail) == ["one", "two"]
    assert len(closes) == 2 and len(set(closes)) == 2
    assert tail.closed and _open_fds() == before


def test_detach_reads_nothing_keeps_the_position_and_closes_both_files_once(
    tmp_path: Path, closes: list[int]
) -> None:
    out = _output(tmp_path)
    before = _open_fds()
    tail = FileTail(out, 7)
    assert tail.detach() is True
    assert tail.detach() is False
    tail.close()  # the exit watcher's close after a takeover's detach: nothing left to close
    tail.catch_up()
    assert list(tail.tail) == []
    assert len(closes) == 2 and _open_fds() == before
    assert FileTail(out, 7)._saved_offset() == 0  # the next reader starts where we stopped


def test_a_descriptor_closed_by_someone_else_neither_leaks_the_other_nor_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = _open_fds()
    tail = FileTail(_output(tmp_path), 7)
    stolen = min(_open_fds() - before)
    os.close(stolen)  # a stray close elsewhere
    installed_here = fdcheck.install()
    try:
        with caplog.at_level(logging.ERROR):
            tail.close()
    finally:
        if installed_here:
            fdcheck.uninstall()
    assert _open_fds() == before
    assert any(FAILED_CLOSE_PREFIX in r.getMessage() for r in caplog.records)
    assert any("closing its output file" in r.getMessage() for r in caplog.records)


def test_the_position_file_is_kept_for_the_next_reader(tmp_path: Path) -> None:
    out = _output(tmp_path)
    tail = FileTail(out, 7)
    tail.close()
    assert position_path(out).read_bytes().split(b"\n")[0] == str(len(b"one\ntwo\n")).encode()


def test_detach_after_a_partial_read_leaves_the_rest_to_the_next_reader(
    tmp_path: Path, closes: list[int]
) -> None:
    out = _output(tmp_path)
    tail = FileTail(out, 7)
    tail.catch_up()
    with out.open("ab") as replica:  # the replica goes on writing after the handover
        replica.write(b"three\n")
    assert tail.detach() is True
    assert list(tail.tail) == ["one", "two"] and tail.closed and len(closes) == 2
    successor = FileTail(out, 8)
    successor.close()
    assert list(successor.tail) == ["three"]


def test_a_detached_reader_task_ends_on_its_next_poll(tmp_path: Path) -> None:
    tail = FileTail(_output(tmp_path), 7)

    async def scenario() -> None:
        task = asyncio.create_task(tail.run())
        await asyncio.sleep(0)
        tail.detach()
        await asyncio.wait_for(task, timeout=2)

    asyncio.run(scenario())
    assert tail.closed


def test_a_pipe_reader_has_no_file_to_detach() -> None:
    assert OutputPump.detach(object.__new__(OutputPump)) is False
