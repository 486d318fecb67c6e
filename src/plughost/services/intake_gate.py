"""The bound on archive intakes: unpack, scan and manifest child, off the event loop.

Intake is disk and CPU work plus waits on child processes, seconds for a large archive. Each
one runs in a worker thread, and at most ``size`` run at once (the machine's cores by
default): more would only share the same cores and disk. Those past the bound wait their
turn in arrival order; none is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class IntakeGate:
    """An asyncio semaphore in front of ``asyncio.to_thread``; use it from the event loop."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("an intake gate needs at least one slot")
        self.size = size
        self._slots = asyncio.Semaphore(size)
        self.waiting = 0  # queued for a slot now
        self.running = 0  # in a worker thread now

    async def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``function(*args, **kwargs)`` in a worker thread, once a slot is free.

        A caller cancelled meanwhile gets CancelledError at once, but the thread cannot be
        stopped: its slot stays taken until it ends, so the bound holds."""
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        work = asyncio.ensure_future(asyncio.to_thread(function, *args, **kwargs))
        work.add_done_callback(self._release)
        return await asyncio.shield(work)

    def _release(self, work: asyncio.Future[Any]) -> None:
        self.running -= 1
        self._slots.release()
        if not work.cancelled():
            work.exception()  # a caller cancelled meanwhile never reads it: no "never retrieved"
