"""A watchdog that names what blocks the event loop.

The loop beats: a ``call_later`` callback every ``interval_s`` stamps the time. A daemon
thread checks the stamp; when the next beat is late by more than the threshold it takes the
loop thread's stack (the code blocking it, at that moment) and, once the loop beats again,
logs ONE line per stall::

    loop stall: 230 ms in plughost/services/uploads.py:250 run_intake; stack: ...

A loop thread that is ready to run but waits for a CPU (a loaded machine) is not stalled by
its own code: the time it spent on the run queue, which Linux counts in the second field of
``/proc/self/task/<tid>/schedstat``, is taken off the lateness. Where that file is absent the
lateness is wall time.

Works on any asyncio loop (uvloop included): it only uses ``call_later``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import sysconfig
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger("plughost.loop")

PREFIX = "loop stall: "
_STACK_DEPTH = 16
_STDLIB = tuple(
    p for p in {sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("platstdlib")} if p
)

RunWaitReader = Callable[[int], "int | None"]
FramesReader = Callable[[], "dict[int, FrameType]"]


def read_run_wait_ns(native_tid: int) -> int | None:
    """Nanoseconds the thread has spent runnable but waiting for a CPU; None when the kernel
    does not say (not Linux, no schedstats)."""
    try:
        with open(f"/proc/self/task/{native_tid}/schedstat", "rb") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


def read_others_run_wait_ns(loop_tid: int) -> int | None:
    """Run-queue nanoseconds of every other thread of this process, summed (None: unknown).
    A loop waiting for the GIL waits for its holder, which may itself wait for a CPU."""
    total = 0
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tids:
        if tid != str(loop_tid):
            total += read_run_wait_ns(int(tid)) or 0
    return total


def current_frames() -> dict[int, FrameType]:
    """Every thread's current frame. ``sys._current_frames`` is the only way Python offers to
    read another thread's stack; this is its one caller, and the watchdog's unit test fails
    loudly if it stops naming the frame."""
    return sys._current_frames()


def _short(path: str) -> str:
    """A file path without the machine's prefix: from the package or the stdlib on."""
    for marker in ("/site-packages/", "/src/"):
        if marker in path:
            return path.rsplit(marker, 1)[1]
    for root in _STDLIB:
        if path.startswith(root + "/"):
            return path[len(root) + 1 :]
    return "/".join(path.rsplit("/", 2)[-2:])


def _is_library(path: str) -> bool:
    """The standard library, an installed package, or generated code (``<string>``)."""
    return (
        path.startswith("<")
        or "/site-packages/" in path
        or any(path.startswith(root + "/") for root in _STDLIB)
    )


def describe_stack(frame: FrameType | None) -> tuple[str, str]:
    """``(culprit, stack)``: the innermost frame of our own code (not the standard library,
    not an installed package) as ``file:line function``, and the innermost frames."""
    if frame is None:
        return "an unknown place (no stack)", ""
    summaries = list(reversed(traceback.extract_stack(frame)))  # innermost first
    names = [f"{_short(s.filename)}:{s.lineno} {s.name}" for s in summaries]
    culprit = next(
        (name for s, name in zip(summaries, names, strict=True) if not _is_library(s.filename)),
        names[0],
    )
    return culprit, " < ".join(names[:_STACK_DEPTH])


# Where the loop thread sits when no callback of the loop runs: in the loop's own C code
# (uvloop) or its selector. Stalled there, it waits for the GIL (or a C call holds it).
_LOOP_RUNNER = frozenset({"run", "run_forever", "run_until_complete", "_run_once"})
# Innermost functions of threads that wait and so cannot be what keeps the GIL (an idle
# pool worker's innermost Python frame is its _worker, blocked in the queue's C code).
_WAITING = frozenset(
    {"wait", "_wait_for_tstate_lock", "_try_wait", "select", "poll", "get", "sleep", "_worker"}
)


def in_loop_runner(frame: FrameType) -> bool:
    """Whether the loop thread runs none of the loop's callbacks: it sits in asyncio's runner
    (uvloop: the loop is C code below it) or in the selector the runner called."""
    code = frame.f_code
    if code.co_name == "select" and frame.f_back is not None:
        code = frame.f_back.f_code
    return code.co_name in _LOOP_RUNNER and "asyncio" in code.co_filename


def busy_threads(frames: dict[int, FrameType], loop_ident: int) -> str:
    """The other threads that are not waiting, each as ``name: file:line function`` (its
    innermost frame of our own code): one of them held the GIL the loop waited for."""
    names = {t.ident: t.name for t in threading.enumerate()}
    busy = []
    for ident, frame in frames.items():
        if ident in (loop_ident, threading.get_ident()) or frame.f_code.co_name in _WAITING:
            continue
        culprit, _ = describe_stack(frame)
        busy.append(f"{names.get(ident, ident)}: {culprit}")
    return ", ".join(busy) or "none"


def stall_seconds(late_s: float, run_wait_ns: int | None) -> float:
    """The part of a beat's lateness the loop's own code is to blame for: wall lateness minus
    the time the loop thread waited on the run queue meanwhile (unknown: nothing taken off)."""
    return late_s - (run_wait_ns or 0) / 1e9


@dataclass
class _Stall:
    seq: int  # the beat after which the loop went quiet
    expected: float  # when the next beat was due
    wait_at_beat: int | None
    culprit: str
    stack: str
    gil: bool  # the loop ran none of its code: it waited for the GIL
    reported: bool = False


class LoopWatchdog:
    """Heartbeat on one loop plus a checker thread; :meth:`start` and :meth:`stop` are called
    in the loop's thread. ``clock``, ``run_wait`` and ``frames`` are injectable, and
    :meth:`check` is one step of the thread, so the arithmetic is testable without threads."""

    def __init__(
        self,
        threshold_s: float,
        *,
        interval_s: float = 0.01,
        stuck_report_s: float = 5.0,
        report: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        run_wait: RunWaitReader = read_run_wait_ns,
        frames: FramesReader = current_frames,
        others_run_wait: RunWaitReader = read_others_run_wait_ns,
    ) -> None:
        self.threshold_s = threshold_s
        self.interval_s = interval_s
        self.stuck_report_s = max(stuck_report_s, threshold_s)
        self.report = report or log.warning
        self.clock = clock
        self.run_wait = run_wait
        self.frames = frames
        self.others_run_wait = others_run_wait
        # (time, the other threads' run-queue wait) every 50 ms: the baseline of GIL waits
        self._others: deque[tuple[float, int]] = deque(maxlen=64)
        self._beat: tuple[int, float] = (0, clock())  # (sequence, time): one atomic store
        # the longest gap between beats the watcher has not looked at: (sequence, seconds,
        # when it started)
        self._worst: tuple[int, float, float] = (0, 0.0, 0.0)
        self._seen: tuple[int, int | None] = (0, None)  # (sequence, run wait when first seen)
        self._stall: _Stall | None = None
        self._ident = 0
        self._tid = 0
        self._handle: asyncio.TimerHandle | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the loop side -----------------------------------------------------------------------
    def start(self) -> LoopWatchdog:
        loop = asyncio.get_running_loop()
        self._ident, self._tid = threading.get_ident(), threading.get_native_id()
        self._seen = (0, self.run_wait(self._tid))
        self._beat = (0, self.clock())
        self.beat()
        self._handle = loop.call_later(self.interval_s, self._tick, loop)
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()
        log.info("loop watchdog: reporting stalls over %.0f ms", self.threshold_s * 1000)
        return self

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self.beat()
        self._handle = loop.call_later(self.interval_s, self._tick, loop)

    def beat(self) -> None:
        """Stamp a beat (the loop's callback; tests call it to play the loop).

        It also keeps the longest gap since the watcher last looked: a thread that holds the
        GIL stops the watcher too, which then may first run after the loop beat again."""
        seq, at = self._beat
        now = self.clock()
        gap = now - at - self.interval_s
        worst = self._worst
        if worst[0] <= self._seen[0] or gap > worst[1]:
            self._worst = (seq + 1, gap, at)
        self._beat = (seq + 1, now)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(5)
        self.check()
        if self._stall is not None and not self._stall.reported:
            self._emit(self._stall, self.clock(), self.run_wait(self._tid), "")

    # -- the watching side ---------------------------------------------------------------------
    def _watch(self) -> None:
        poll = max(0.002, min(self.interval_s, self.threshold_s / 4))
        while not self._stopped.wait(poll):
            try:
                self.check()
            except Exception:  # a watchdog must never take the server down
                log.exception("loop watchdog check failed")

    def check(self) -> None:
        """One look at the heartbeat: open a stall when the next beat is overdue by more than
        the threshold (taking the loop's stack), report it once the loop beats again."""
        now = self.clock()
        seq, beat_at = self._beat
        wait = self.run_wait(self._tid)
        self._sample_others(now)
        if seq != self._seen[0]:
            stall = self._stall
            if stall is not None and not stall.reported:
                self._emit(stall, beat_at, wait, "")
            elif stall is None:
                self._unseen(wait)
            self._stall = None
            self._seen = (seq, wait)
        expected = beat_at + self.interval_s
        if self._stall is None:
            if stall_seconds(now - expected, _delta(wait, self._seen[1])) > self.threshold_s:
                frames = self.frames()
                frame = frames.get(self._ident)
                culprit, stack = describe_stack(frame)
                gil = frame is not None and in_loop_runner(frame)
                if gil:
                    culprit = (
                        f"the loop runner (GIL wait); busy: {busy_threads(frames, self._ident)}"
                    )
                self._stall = _Stall(seq, expected, self._seen[1], culprit, stack, gil)
        elif not self._stall.reported and now - expected > self.stuck_report_s:
            self._emit(self._stall, now, wait, " (still blocked)")

    def _unseen(self, wait: int | None) -> None:
        """Report a gap between beats that ended before the watcher ran to see it open."""
        seq, gap, started = self._worst
        if seq <= self._seen[0]:
            return
        took = stall_seconds(gap, _delta(wait, self._seen[1])) - self._others_wait_s(started)
        if took > self.threshold_s:
            busy = busy_threads(self.frames(), self._ident)
            self.report(
                f"{PREFIX}{took * 1000:.0f} ms in an unseen place (no thread could look: "
                f"the GIL was held); busy after it: {busy}"
            )

    def _emit(self, stall: _Stall, until: float, wait: int | None, note: str) -> None:
        took = stall_seconds(until - stall.expected, _delta(wait, stall.wait_at_beat))
        if stall.gil:
            took -= self._others_wait_s(stall.expected - self.interval_s)
        stall.reported = True
        if took <= self.threshold_s:  # the run-queue wait explained it after all
            return
        self.report(f"{PREFIX}{took * 1000:.0f} ms in {stall.culprit}{note}; stack: {stall.stack}")

    def _sample_others(self, now: float) -> None:
        if self._others and now - self._others[-1][0] < 0.05:
            return
        waited = self.others_run_wait(self._tid)
        if waited is not None:
            self._others.append((now, waited))

    def _others_wait_s(self, since: float) -> float:
        """Seconds the other threads waited for a CPU since ``since`` (the holder of the GIL
        the loop waited for is one of them): the part of a GIL wait a loaded machine, not a
        blocking call, is to blame for. The baseline is the last sample before ``since``."""
        now = self.others_run_wait(self._tid)
        before = [w for t, w in self._others if t <= since]
        if now is None or not (before or self._others):
            return 0.0
        return max(0, now - (before[-1] if before else self._others[0][1])) / 1e9


def _delta(now: int | None, then: int | None) -> int | None:
    return None if now is None or then is None else max(0, now - then)
