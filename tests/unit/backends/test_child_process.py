"""ChildProcess output streams: read on the loop, each descriptor closed exactly once (issue 14)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from plughost.backends.replica_launch import ChildProcess

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
