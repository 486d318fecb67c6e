"""Server-side micro-batching in the replica: concurrent calls answered by one batch call.

With ``serve_config.max_batch_size`` above 1 and a service that can take a batch
(``run_inference_batch(inputs, parameters)``, or a ``BaseBatchInferenceService``), the
replica's calls wait in a :class:`Batcher`. A batch leaves when it is full or when its oldest
call has waited ``batch_wait_timeout_s``, whichever comes first; one batch runs at a time
(a model is busy with one batch; the next one forms meanwhile). Each caller gets its own
element of the result. An exception fails every call of the batch with it; a result of the
wrong length fails them with :class:`PluginError`. A call whose caller went away (deadline,
hang-up) before its batch left is not put in a batch; a batch whose callers have all gone is
cancelled.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from plughost.replica.invoke import OnThread

RunBatch = Callable[[list[dict[str, Any]], list[dict[str, Any]], OnThread], Awaitable[Any]]


class PluginError(Exception):
    """A batch handler broke its contract (its result is not one element per call)."""


@dataclass(eq=False, slots=True)
class _Pending:
    inputs: dict[str, Any]
    parameters: dict[str, Any]
    future: asyncio.Future[tuple[Any, int]]
    arrived: float
    on_thread: OnThread | None
    batch: _Running | None = None


@dataclass(eq=False, slots=True)
class _Running:
    calls: list[_Pending]
    task: asyncio.Future[Any] | None = None
    threads: list[Any] = field(default_factory=list)


class Batcher:
    """Gathers calls into batches for ``run(inputs, parameters, on_thread)``."""

    def __init__(self, run: RunBatch, max_size: int, wait_s: float) -> None:
        self._run = run
        self.max_size = max(1, int(max_size))
        self.wait_s = max(0.0, float(wait_s))
        self._queue: deque[_Pending] = deque()
        self._more = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    async def submit(
        self, inputs: dict[str, Any], parameters: dict[str, Any], on_thread: OnThread | None = None
    ) -> tuple[Any, int]:
        """This call's element of its batch's result, and the batch's size when this call
        is the first one answered from it (else 0). Raises what the batch raised."""
        loop = asyncio.get_running_loop()
        pending = _Pending(inputs, parameters, loop.create_future(), loop.time(), on_thread)
        self._queue.append(pending)
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = loop.create_task(self._gather())
        if len(self._queue) >= self.max_size:
            self._more.set()
        try:
            return await pending.future
        except asyncio.CancelledError:
            running = pending.batch
            if running is not None and running.task is not None and all(
                p.future.done() for p in running.calls
            ):
                running.task.cancel()  # nobody waits for this batch any more
            raise

    def _live(self) -> int:
        return sum(1 for p in self._queue if not p.future.done())

    async def _gather(self) -> None:
        """Form batches and run them, one at a time, while calls wait."""
        loop = asyncio.get_running_loop()
        while self._queue:
            flush_at = self._queue[0].arrived + self.wait_s
            while self._live() < self.max_size:
                left = flush_at - loop.time()
                if left <= 0:
                    break
                self._more.clear()
                try:
                    async with asyncio.timeout(left):
                        await self._more.wait()
                except TimeoutError:
                    break
            calls: list[_Pending] = []
            while self._queue and len(calls) < self.max_size:
                pending = self._queue.popleft()
                if not pending.future.done():  # its caller went away before the batch left
                    calls.append(pending)
            if calls:
                await self._run_batch(calls)

    async def _run_batch(self, calls: list[_Pending]) -> None:
        running = _Running(calls)
        for pending in calls:
            pending.batch = running

        def on_thread(future: Any) -> None:
            running.threads.append(future)
            for pending in calls:
                if pending.on_thread is not None:
                    pending.on_thread(future)

        running.task = asyncio.ensure_future(self._call(calls, on_thread))
        try:
            results = await asyncio.shield(running.task)
        except asyncio.CancelledError:
            if running.task.cancelled():  # every caller left: the batch was cancelled
                return
            raise
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - every caller gets it
            for pending in calls:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        first = True
        for pending, result in zip(calls, results, strict=True):
            if not pending.future.done():
                pending.future.set_result((result, len(calls) if first else 0))
                first = False

    async def _call(self, calls: list[_Pending], on_thread: OnThread) -> list[Any]:
        result = await self._run(
            [p.inputs for p in calls], [p.parameters for p in calls], on_thread
        )
        while inspect.isawaitable(result):
            result = await result
        if not isinstance(result, (list, tuple)):
            raise PluginError(
                f"the batch handler returned {type(result).__name__}, not a list with one "
                f"result per call ({len(calls)} calls)"
            )
        if len(result) != len(calls):
            raise PluginError(
                f"the batch handler returned {len(result)} results for {len(calls)} calls"
            )
        return list(result)


def batch_runner(
    handler: Callable[..., Any],
    in_thread: Callable[..., Awaitable[Any]],
) -> RunBatch:
    """``run(inputs, parameters, on_thread)`` for a batch handler: an async one awaited on
    the loop, a plain one in the plugin thread (``in_thread``, the invoker's)."""
    if inspect.iscoroutinefunction(handler):

        async def run_async(
            inputs: list[dict[str, Any]], parameters: list[dict[str, Any]], on_thread: OnThread
        ) -> Any:
            return await handler(inputs, parameters)

        return run_async

    async def run_plain(
        inputs: list[dict[str, Any]], parameters: list[dict[str, Any]], on_thread: OnThread
    ) -> Any:
        return await in_thread(handler, inputs, parameters, on_thread=on_thread)

    return run_plain
