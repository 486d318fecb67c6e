"""Run a loaded plugin's handler without blocking the replica's event loop."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from plughost.replica.loader import LoadedPlugin

QUICK_CALL_S = 0.001  # a plain call this quick costs less than the hand-off to a thread
QUICK_STREAK = 16  # consecutive quick calls in the thread before calls run on the loop
# In the thread a call's wall time includes waiting for the GIL while the loop is busy, so
# there a call counts as quick on its CPU time, unless it also waited this long (I/O, sleep).
THREAD_WALL_LIMIT_S = 0.02
OnThread = Callable[["Future[Any]"], object]


class ServiceInvoker:
    """Calls a plugin's handler and health check.

    An async handler runs on the event loop. A plain one runs in a single dedicated thread,
    one call at a time, so the loop keeps answering health pings while it computes; an
    awaitable it returns is then awaited on the loop.

    Except when it is quick: after QUICK_STREAK calls in a row that each took less than
    QUICK_CALL_S in the thread, plain calls run on the event loop itself (:meth:`call_now`),
    as a bare server would run them: for a sub-millisecond plugin the thread hand-off, its
    wake-ups and the GIL passing between two threads cost more than the call. The first call
    that takes longer sends the following ones back to the thread (at most that one call
    held the loop up). Still one call at a time: inline calls wait until the thread is idle.
    """

    def __init__(
        self,
        handler: Callable[..., Any],
        health: Callable[[], Any] | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.thread_time,
        may_inline: Callable[[], bool] | None = None,
    ):
        """``clock`` times a call's wall time and ``cpu_clock`` the plugin thread's CPU time
        (what decides whether calls are quick); tests pass clocks they advance themselves.
        ``may_inline``: False keeps plain calls in the plugin thread (a plugin that makes
        container calls blocks on replies the loop must deliver)."""
        self._handler = handler
        self._may_inline = may_inline
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._health = health
        self._handler_is_async = inspect.iscoroutinefunction(handler)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plugin-call")
        self._thread_futures: set[Future[Any]] = set()
        self._quick_streak = 0

    @classmethod
    def for_plugin(
        cls, plugin: LoadedPlugin, may_inline: Callable[[], bool] | None = None
    ) -> ServiceInvoker:
        """An invoker for a loaded plugin's handler and health method."""
        return cls(plugin.handler, plugin.health, may_inline=may_inline)

    @property
    def thread_busy(self) -> bool:
        """Whether a plain call is queued or running in the plugin thread."""
        return bool(self._thread_futures)

    @property
    def inline_ready(self) -> bool:
        """Whether the next plain call may run on the event loop (:meth:`call_now`)."""
        return (
            self._quick_streak >= QUICK_STREAK
            and not self._handler_is_async
            and not self._thread_futures
            and (self._may_inline is None or self._may_inline())
        )

    def call_now(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
        """Run the plain handler on the calling thread, timed; only when :attr:`inline_ready`.

        Returns what the handler returned (an awaitable is the caller's to await)."""
        started = self._clock()
        try:
            return self._handler(inputs, parameters)
        finally:
            self._note(self._clock() - started)

    async def call(
        self,
        inputs: dict[str, Any],
        parameters: dict[str, Any],
        on_thread: OnThread | None = None,
    ) -> Any:
        """Answer one request; the plugin's exceptions propagate to the caller.

        ``on_thread(future)`` is told of the plugin thread's future when the call runs
        there (whoever cancels the call learns from it whether the thread still runs)."""
        if self._handler_is_async:
            result = await self._handler(inputs, parameters)
        elif self.inline_ready:
            result = self.call_now(inputs, parameters)
        else:
            result = await self.in_thread(self._timed_call, inputs, parameters, on_thread=on_thread)
        while inspect.isawaitable(result):
            result = await result
        return result

    def _timed_call(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
        """The handler in the plugin thread, timed."""
        started, cpu_started = self._clock(), self._cpu_clock()
        try:
            return self._handler(inputs, parameters)
        finally:
            wall = self._clock() - started
            cpu = self._cpu_clock() - cpu_started
            self._note(cpu if wall < THREAD_WALL_LIMIT_S else wall)

    def _note(self, seconds: float) -> None:
        self._quick_streak = self._quick_streak + 1 if seconds < QUICK_CALL_S else 0

    async def health(self) -> bool:
        """The service's own verdict (True when it has no health method).

        A plain health method runs in the default executor, not the plugin thread, so a long
        call does not make the replica look dead. Exceptions propagate.
        """
        if self._health is None:
            return True
        if inspect.iscoroutinefunction(self._health):
            verdict = await self._health()
        else:
            verdict = await asyncio.to_thread(self._health)
        while inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)

    async def in_thread(
        self, function: Callable[..., Any], *args: Any, on_thread: OnThread | None = None
    ) -> Any:
        """Run ``function(*args)`` in the plugin thread, tracked until the thread is done.

        Cancelling the await drops the call when it has not started yet (it never runs);
        one already running finishes in the thread. ``on_thread``: see :meth:`call`."""
        future = self._executor.submit(function, *args)
        self._thread_futures.add(future)
        future.add_done_callback(self._thread_futures.discard)
        if on_thread is not None:
            on_thread(future)
        return await asyncio.wrap_future(future)

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        """Queue ``function(*args)`` in the plugin thread without waiting for it (closing a
        generator after the call it streamed ended)."""
        try:
            future = self._executor.submit(function, *args)
        except RuntimeError:  # shut down
            return
        self._thread_futures.add(future)
        future.add_done_callback(self._thread_futures.discard)

    def shutdown(self) -> None:
        """Drop queued plain calls; a running one is left to finish (threads can't be killed)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
