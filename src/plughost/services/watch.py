"""The status watch: the status body after every release change of one plugin, until a
final status (``GET .../status?watch=true``; shapes in :mod:`plughost.api.routes_observe`).

The release board calls :meth:`StatusWatches.on_change` on the writing thread right after
each write, inside the releases' write lock, so the body computed there (from memory) is the
status as of that very change: a rollout faster than a client's reads still shows each step.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from plughost.domain.release import ReleaseView
from plughost.domain.scope import PluginScope
from plughost.services.status import DeploymentStatus

FINAL = frozenset({"deployed", "failed", "not_deployed"})
KEEPALIVE_S = 15.0
_IGNORED = ("estimated_completion_seconds",)


@dataclass(eq=False)
class _Watcher:
    scope: PluginScope
    plugin_id: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[dict[str, Any] | None]


class StatusWatches:
    def __init__(self, status: DeploymentStatus) -> None:
        self.status = status
        self._watchers: dict[tuple[str, int], dict[int, _Watcher]] = {}
        self._ids = itertools.count()
        status.releases.board.listeners.append(self.on_change)
        # a restore after a server start ends without a release write
        status.controller.restores.listeners.append(lambda view: self.on_change(view, None))

    def on_change(self, view: ReleaseView, _duration_s: float | None) -> None:
        watchers = self._watchers.get((view.namespace_id, view.plugin_pk))
        if not watchers:
            return
        for w in list(watchers.values()):
            body = self.status.cached_status(w.scope, w.plugin_id)  # None: read again
            w.loop.call_soon_threadsafe(w.queue.put_nowait, body)

    async def watch(
        self, scope: PluginScope, plugin_id: str, plugin_pk: int
    ) -> AsyncIterator[dict[str, Any] | None]:
        """Status bodies, one per change, ending with a final one; None every
        KEEPALIVE_S without a change (the caller sends a keepalive)."""
        assert scope.namespace_id is not None
        key = (scope.namespace_id, plugin_pk)
        watcher = _Watcher(scope, plugin_id, asyncio.get_running_loop(), asyncio.Queue())
        token = next(self._ids)
        self._watchers.setdefault(key, {})[token] = watcher
        try:
            body = await asyncio.to_thread(self.status.status, scope, plugin_id)
            last = _essence(body)
            yield body
            while body["status"] not in FINAL:
                try:
                    async with asyncio.timeout(KEEPALIVE_S):
                        item = await watcher.queue.get()
                except TimeoutError:
                    yield None
                    continue
                if item is None:
                    item = await asyncio.to_thread(self.status.status, scope, plugin_id)
                if _essence(item) != last:
                    body, last = item, _essence(item)
                    yield body
        finally:
            watchers = self._watchers.get(key, {})
            watchers.pop(token, None)
            if not watchers:
                self._watchers.pop(key, None)


def _essence(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in _IGNORED}
