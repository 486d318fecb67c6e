"""The warm spare of a local group scaled to zero (``PLUGHOST_WARM_SPARE``).

At zero, a group keeps one replica process started ahead of need: ``plughost.replica.spare``,
launched like any replica of the release (the same sandbox wrapper, uid, socket and
environment), which has imported the worker and blocks on a pipe before it loads the plugin.
A call that wakes the group writes one byte: the spare enters the in-process sandbox layers,
loads the plugin and answers the start-up handshake, so a cold start pays the plugin's load
instead of an interpreter start, the sandbox wrapper and the runtime imports (which
``bench.cold_start`` measures as most of it). Closing the pipe lets the spare go: it exits
with nothing loaded. A spare holds an interpreter with the worker imported (about the RSS of
an idle hash16 replica) and runs no plugin code.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

SPARE_HOLD_S = 365 * 24 * 3600.0  # a spare waits for its byte this long at most


class Spare:
    """One pre-started replica; ``launch(hold_fd)`` starts it (the group's own launch)."""

    def __init__(self, launch: Callable[[int], Awaitable[Any]]) -> None:
        self._read, self._write = os.pipe()
        self._write_open = True
        self.task: asyncio.Task[Any] = asyncio.ensure_future(launch(self._read))
        self.task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        os.close(self._read)
        self._close_write()
        if not task.cancelled():
            task.exception()  # a spare that failed is not used; its error is not lost either

    def _close_write(self) -> None:
        if self._write_open:
            self._write_open = False
            os.close(self._write)

    @property
    def usable(self) -> bool:
        """Still waiting for its byte (not failed, not already sent on)."""
        return self._write_open and not self.task.done()

    async def go(self, timeout_s: float) -> Any:
        """Send the byte and wait, at most ``timeout_s``, for the replica (the launch's
        result); on timeout the start is cancelled, which kills the process."""
        try:
            os.write(self._write, b"g")
        finally:
            self._close_write()
        return await asyncio.wait_for(self.task, timeout_s)

    def discard(self) -> None:
        """Let the spare go: it reads end of file and exits; its start fails quietly."""
        self._close_write()
