"""The loop watchdog: a blocked loop is reported with the frame that blocked it; a loop that
only awaits is not; lateness from waiting for a CPU is not blamed on the loop."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from plughost.server.loopwatch import (
    PREFIX,
    LoopWatchdog,
    current_frames,
    describe_stack,
    in_loop_runner,
    read_run_wait_ns,
    stall_seconds,
)

HERE = Path(__file__).name


def _loop_factories() -> list[Any]:
    factories: list[Any] = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:  # uvloop ships with uvicorn[standard]; tolerate its absence anyway
        return factories
    return [*factories, pytest.param(uvloop.new_event_loop, id="uvloop")]


def _run(factory: Callable[[], asyncio.AbstractEventLoop], body: Coroutine[Any, Any, None]) -> None:
    loop = factory()
    try:
        loop.run_until_complete(body)
    finally:
        loop.close()


def block_the_loop_with_sleep() -> None:
    time.sleep(0.3)


@pytest.mark.parametrize("factory", _loop_factories())
def test_blocking_sleep_is_reported_once_with_its_frame(factory: Any) -> None:
    lines: list[str] = []

    async def body() -> None:
        watchdog = LoopWatchdog(0.1, report=lines.append).start()
        await asyncio.sleep(0.05)
        block_the_loop_with_sleep()
        await asyncio.sleep(0.05)
        watchdog.stop()

    _run(factory, body())
    assert len(lines) == 1, lines
    assert lines[0].startswith(PREFIX)
    assert f"{HERE}:" in lines[0] and "block_the_loop_with_sleep" in lines[0].split(";")[0]
    took_ms = int(lines[0].removeprefix(PREFIX).split(" ms", 1)[0])
    assert took_ms > 100


@pytest.mark.parametrize("factory", _loop_factories())
def test_a_loop_that_only_awaits_is_not_reported(factory: Any) -> None:
    lines: list[str] = []

    async def body() -> None:
        watchdog = LoopWatchdog(0.1, report=lines.append).start()
        for _ in range(6):
            await asyncio.sleep(0.05)
        await asyncio.gather(*(asyncio.sleep(0.1) for _ in range(20)))
        await asyncio.to_thread(time.sleep, 0.3)  # blocking work in a thread is fine
        watchdog.stop()

    _run(factory, body())
    assert lines == []


class FakeTime:
    """A clock and a schedstat reader the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0
        self.run_wait_ns: int | None = 0
        self.others_wait_ns: int | None = 0

    def clock(self) -> float:
        return self.now

    def run_wait(self, tid: int) -> int | None:
        return self.run_wait_ns

    def others_run_wait(self, tid: int) -> int | None:
        return self.others_wait_ns


def _frames_of_this_thread() -> dict[int, FrameType]:
    return {0: sys._getframe()}


def _watchdog(fake: FakeTime, lines: list[str]) -> LoopWatchdog:
    watchdog = LoopWatchdog(
        0.1,
        interval_s=0.01,
        report=lines.append,
        clock=fake.clock,
        run_wait=fake.run_wait,
        frames=_frames_of_this_thread,
        others_run_wait=fake.others_run_wait,
    )
    watchdog.beat()
    watchdog.check()  # the watcher sees the beat and notes the run-queue wait then
    return watchdog


def test_lateness_spent_waiting_for_a_cpu_is_not_a_stall() -> None:
    fake, lines = FakeTime(), []
    watchdog = _watchdog(fake, lines)
    fake.now += 0.5  # half a second without a beat ...
    fake.run_wait_ns = 450_000_000  # ... 450 ms of it runnable, waiting for a CPU
    watchdog.check()
    watchdog.beat()
    watchdog.check()
    assert lines == []


def test_lateness_beyond_the_run_queue_wait_is_a_stall() -> None:
    fake, lines = FakeTime(), []
    watchdog = _watchdog(fake, lines)
    fake.now += 0.5
    fake.run_wait_ns = 100_000_000  # only 100 ms of the 490 ms lateness waited for a CPU
    watchdog.check()
    assert lines == []  # reported once the loop is back, with the whole duration
    fake.now += 0.1
    fake.run_wait_ns = 150_000_000
    watchdog.beat()
    watchdog.check()
    watchdog.check()
    assert len(lines) == 1
    assert lines[0].startswith(f"{PREFIX}440 ms in ")  # 590 ms late - 150 ms on the run queue
    assert "_frames_of_this_thread" in lines[0]


def test_without_schedstat_the_wall_time_counts() -> None:
    fake, lines = FakeTime(), []
    fake.run_wait_ns = None
    watchdog = _watchdog(fake, lines)
    fake.now += 0.3
    watchdog.check()
    watchdog.beat()
    watchdog.check()
    assert len(lines) == 1 and lines[0].startswith(f"{PREFIX}290 ms in ")


def test_a_loop_stuck_for_good_is_reported_while_stuck_once() -> None:
    fake, lines = FakeTime(), []
    watchdog = _watchdog(fake, lines)
    fake.now += 0.2
    watchdog.check()
    fake.now += 10
    watchdog.check()
    fake.now += 10
    watchdog.check()
    watchdog.beat()
    watchdog.check()
    assert len(lines) == 1 and "(still blocked)" in lines[0]


def test_stall_arithmetic() -> None:
    assert stall_seconds(0.5, 450_000_000) == pytest.approx(0.05)
    assert stall_seconds(0.5, None) == 0.5


def test_run_wait_is_read_from_schedstat_when_the_kernel_has_it() -> None:
    tid = threading.get_native_id()
    value = read_run_wait_ns(tid)
    if not Path(f"/proc/self/task/{tid}/schedstat").exists():
        assert value is None
    else:
        assert isinstance(value, int) and value >= 0
    assert read_run_wait_ns(-1) is None


def wait_in_the_standard_library(started: threading.Event, release: threading.Event) -> None:
    started.set()
    release.wait(30)


def test_the_culprit_is_our_own_frame_not_the_library_below_it() -> None:
    started, release = threading.Event(), threading.Event()
    thread = threading.Thread(target=wait_in_the_standard_library, args=(started, release))
    thread.start()
    try:
        started.wait(30)
        frame = current_frames()[thread.ident or 0]
        while frame.f_code.co_name != "wait":  # until it sits in Event.wait
            time.sleep(0.01)
            frame = current_frames()[thread.ident or 0]
        culprit, stack = describe_stack(frame)
    finally:
        release.set()
        thread.join(30)
    assert culprit.endswith(f"{HERE}:{_line_of_wait()} wait_in_the_standard_library")
    assert stack.startswith("threading.py:") and " < " in stack
    assert describe_stack(None)[0].startswith("an unknown place")


def _line_of_wait() -> int:
    code = wait_in_the_standard_library.__code__
    source = Path(__file__).read_text().splitlines()
    start = code.co_firstlineno
    return next(n for n in range(start, start + 5) if "release.wait" in source[n - 1])


def test_a_gap_the_watcher_could_not_see_open_is_reported_after_it() -> None:
    """A C call holding the GIL stops the watcher thread too: the loop's own beat keeps the
    gap, and the watcher reports it when it runs again."""
    fake, lines = FakeTime(), []
    watchdog = _watchdog(fake, lines)
    fake.now += 0.5
    watchdog.beat()  # the loop came back before the watcher could look
    fake.now += 0.01
    watchdog.beat()
    watchdog.check()
    assert len(lines) == 1
    assert lines[0].startswith(f"{PREFIX}490 ms in an unseen place")


def test_an_unseen_gap_spent_waiting_for_a_cpu_is_not_a_stall() -> None:
    fake, lines = FakeTime(), []
    watchdog = _watchdog(fake, lines)
    fake.now += 0.5
    fake.run_wait_ns = 480_000_000
    watchdog.beat()
    watchdog.check()
    assert lines == []


def test_an_unseen_gap_while_the_other_threads_waited_for_a_cpu_is_not_a_stall() -> None:
    """The loop waited for the GIL, whose holder waited for a CPU: a loaded machine."""
    fake, lines = FakeTime(), []
    watchdog = _watchdog(fake, lines)
    fake.now += 0.5
    fake.others_wait_ns = 420_000_000
    watchdog.beat()
    watchdog.check()
    assert lines == []


def test_a_loop_idle_in_its_runner_is_told_apart_from_a_callback() -> None:
    seen: dict[str, bool] = {}
    ready = threading.Event()

    async def idle() -> None:
        ready.set()
        await asyncio.sleep(0.5)

    thread = threading.Thread(target=asyncio.run, args=(idle(),))
    thread.start()
    try:
        ready.wait(30)
        time.sleep(0.1)  # the loop now waits in its selector
        frame = current_frames()[thread.ident or 0]
        seen["idle"] = in_loop_runner(frame)
    finally:
        thread.join(30)
    seen["callback"] = in_loop_runner(sys._getframe())
    assert seen == {"idle": True, "callback": False}
