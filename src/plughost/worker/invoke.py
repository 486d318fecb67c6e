"""Run a loaded plugin's handler without blocking the replica's event loop."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from plughost.worker.loader import LoadedPlugin


class ServiceInvoker:
    """Calls a plugin's handler and health check.

    An async handler runs on the event loop. A plain one runs in a single dedicated thread,
    one call at a time, so the loop keeps answering health pings while it computes; an
    awaitable it returns is then awaited on the loop.
    """

    def __init__(self, handler: Callable[..., Any], health: Callable[[], Any] | None = None):
        self._handler = handler
        self._health = health
        self._handler_is_async = inspect.iscoroutinefunction(handler)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plugin-call")
        self._thread_futures: set[Future[Any]] = set()

    @classmethod
    def for_plugin(cls, plugin: LoadedPlugin) -> ServiceInvoker:
        """An invoker for a loaded plugin's handler and health method."""
        return cls(plugin.handler, plugin.health)

    @property
    def thread_busy(self) -> bool:
        """Whether a plain call is queued or running in the plugin thread."""
        return bool(self._thread_futures)

    async def call(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
        """Answer one request; the plugin's exceptions propagate to the caller."""
        if self._handler_is_async:
            result = await self._handler(inputs, parameters)
        else:
            result = await self._in_thread(self._handler, inputs, parameters)
        while inspect.isawaitable(result):
            result = await result
        return result

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

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` in the plugin thread, tracked until the thread is done."""
        future = self._executor.submit(function, *args)
        self._thread_futures.add(future)
        future.add_done_callback(self._thread_futures.discard)
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        """Drop queued plain calls; a running one is left to finish (threads can't be killed)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
