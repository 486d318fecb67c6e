"""Where a server learns the addresses of its replicas' workers: a small Ray actor.

Each Serve replica registers its worker (node, Unix socket, TCP port, secret, sandbox layers)
once the worker is ready, and unregisters when it stops; Serve's replacements register as
they come up. The server long-polls :meth:`ReplicaDirectory.changes` and connects to what is
new. One directory per server (named after the server's owner tag, detached, so a restarted
server finds the replicas of the applications it adopts).

Nothing here imports ray at module level: the backend wraps the class with ``ray.remote``.
"""

from __future__ import annotations

import asyncio
from typing import Any

NAMESPACE = "plughost"
Listing = dict[str, dict[str, dict[str, Any]]]  # app -> replica id -> worker info


def directory_name(owner: str) -> str:
    return f"plughost-directory-{owner}"


class ReplicaDirectory:
    """app -> replica id -> worker info, with a version that moves on every change."""

    def __init__(self) -> None:
        self._apps: Listing = {}
        self._version = 0
        self._changed = asyncio.Event()

    def _bump(self) -> None:
        self._version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def register(self, app: str, replica_id: str, info: dict[str, Any]) -> int:
        self._apps.setdefault(app, {})[replica_id] = info
        self._bump()
        return self._version

    async def unregister(self, app: str, replica_id: str) -> None:
        if self._apps.get(app, {}).pop(replica_id, None) is not None:
            self._bump()

    async def forget(self, app: str) -> None:
        """Drop an application (deleted by the server)."""
        if self._apps.pop(app, None) is not None:
            self._bump()

    async def changes(self, known: int, timeout_s: float) -> tuple[int, Listing]:
        """The listing once its version differs from ``known`` (or after ``timeout_s``)."""
        if known == self._version:
            event = self._changed
            try:
                await asyncio.wait_for(event.wait(), timeout_s)
            except TimeoutError:
                pass
        return self._version, {app: dict(reps) for app, reps in self._apps.items()}
