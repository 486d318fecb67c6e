"""ChildProcess output streams: read on the loop, each descriptor closed exactly once (issue 14)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from plughost.backends.local.launch import ChildProcess, _stream_reader
from plughost.server import fdcheck

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def _run(make_loop: Callable[[], asyncio.AbstractEventLoop], coro: Coroutine[Any, Any, Any]) -> Any:
    loop = make_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


async def _spawn_and_drain(tmp_path: Path) -> tuple[bytes, bytes, ChildProcess]:
    code = "import sys; print('out'); print('err', file=sys.stderr)"
    child = await ChildProcess.spawn([sys.executable, "-c", code], tmp_path, dict(os.environ), ())
    assert child.stdout is not None and child.stderr is not None
    out = await child.stdout.read()
    err = await child.stderr.read()
    await child.wait()
    await asyncio.sleep(0.05)  # let the transports see EOF and close
    return out, err, child


@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_output_is_read_and_no_python_file_object_shares_the_descriptors(
    loop_name: str, tmp_path: Path
) -> None:
    """The old pipes were owned twice, by the loop's transport and by Popen's file objects;
    uvloop closed the number once itself and once through the file object. Only the loop
    may own what it reads."""
    out, err, child = _run(LOOPS[loop_name], _spawn_and_drain(tmp_path))
    assert out == b"out\n" and err == b"err\n"
    assert child._popen.stdout is None and child._popen.stderr is None


@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_spawned_children_leave_no_descriptor_behind(loop_name: str, tmp_path: Path) -> None:
    async def many() -> None:
        for _ in range(10):
            await _spawn_and_drain(tmp_path)

    before = len(os.listdir("/proc/self/fd"))
    _run(LOOPS[loop_name], many())
    assert len(os.listdir("/proc/self/fd")) <= before + 1  # the loop's own may linger


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


async def _cancel_stream_reader_after(yields: int) -> tuple[int, BaseException | None]:
    ours, theirs = socket.socketpair()
    fd = ours.fileno()
    task = asyncio.ensure_future(_stream_reader(ours))
    await asyncio.sleep(0)  # it runs up to its first wait: the socket is handed over
    for _ in range(yields):
        await asyncio.sleep(0)
    task.cancel()
    outcome: BaseException | None = None
    try:
        await task
    except BaseException as exc:  # noqa: BLE001 - the test looks at what came out
        outcome = exc
    theirs.close()  # a reader that did connect sees the end of its stream and closes
    await asyncio.sleep(0.05)
    return fd, outcome


@pytest.mark.parametrize("yields", [0, 1, 2, 3])
@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_a_stream_connection_cancelled_midway_closes_its_socket_once(
    loop_name: str, yields: int
) -> None:
    """uvloop closed the descriptor of a pipe connection it gave up on, then our cleanup
    closed the same number again: EBADF at best, another thread's file at worst."""
    installed_here = fdcheck.install()
    try:
        fd, outcome = _run(LOOPS[loop_name], _cancel_stream_reader_after(yields))
    finally:
        if installed_here:
            fdcheck.uninstall()
    assert outcome is None or isinstance(outcome, asyncio.CancelledError), repr(outcome)
    assert _closed(fd)


async def _cancelled_spawns(tmp_path: Path) -> None:
    code = "import sys, time; print('out'); time.sleep(0.2)"
    for yields in range(4):
        task = asyncio.ensure_future(
            ChildProcess.spawn([sys.executable, "-c", code], tmp_path, dict(os.environ), ())
        )
        for _ in range(yields):
            await asyncio.sleep(0)
        task.cancel()
        try:
            child = await task
        except asyncio.CancelledError:
            continue
        assert child.stdout is not None and child.stderr is not None
        await child.stdout.read()
        await child.stderr.read()
        await child.wait()
    await asyncio.sleep(0.05)


@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_a_spawn_cancelled_at_any_point_leaves_no_descriptor(
    loop_name: str, tmp_path: Path
) -> None:
    before = len(os.listdir("/proc/self/fd"))
    _run(LOOPS[loop_name], _cancelled_spawns(tmp_path))
    assert len(os.listdir("/proc/self/fd")) <= before + 1  # the loop's own may linger


async def _descriptors_held_after_the_streams_end(tmp_path: Path) -> int:
    await _spawn_and_drain(tmp_path)  # what the loop opens once, on first use
    before = len(os.listdir("/proc/self/fd"))
    out, err, child = await _spawn_and_drain(tmp_path)
    assert out == b"out\n" and err == b"err\n"
    held = len(os.listdir("/proc/self/fd")) - before
    del child  # only now may a finalizer run; it must find nothing left to close
    return held


@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_each_stream_closes_at_its_end_not_when_collected(loop_name: str, tmp_path: Path) -> None:
    """uvloop kept a stream socket whose protocol asks to stay half open after end of file,
    and the garbage collector closed it later, twice (libuv's close, the socket's own),
    from whatever thread it ran in: a stray close of any file opened meanwhile."""
    assert _run(LOOPS[loop_name], _descriptors_held_after_the_streams_end(tmp_path)) <= 0
