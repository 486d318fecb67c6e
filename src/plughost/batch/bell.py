"""How the batch service tells the scheduler about its jobs.

The service and the scheduler each need the other (the service queues and cancels jobs the
scheduler runs; the scheduler runs them through the service's table and counters), so this
small object is built before both and passed to each: the service rings it, the scheduler
listens on it. Until a scheduler listens a ring does nothing: nothing runs jobs yet, and the
scheduler's start picks up every queued job anyway.
"""

from __future__ import annotations

from collections.abc import Callable


class JobBell:
    """Rings for a queued job and for a cancelled one."""

    def __init__(self) -> None:
        self._queued: list[Callable[[], None]] = []
        self._cancelled: list[Callable[[str], None]] = []

    def listen(self, queued: Callable[[], None], cancelled: Callable[[str], None]) -> None:
        """Call ``queued()`` on every queued job and ``cancelled(batch_id)`` on every
        cancelled one (from any thread)."""
        self._queued.append(queued)
        self._cancelled.append(cancelled)

    def queued(self) -> None:
        for listener in self._queued:
            listener()

    def cancelled(self, batch_id: str) -> None:
        for listener in self._cancelled:
            listener(batch_id)
