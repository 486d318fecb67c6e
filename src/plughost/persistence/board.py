"""An in-memory read model of the releases table, for the status endpoint.

Clients poll status many times a second while deployments run; answering each poll from the
database (latest release, serving releases, queue position, recent durations) made the poll
cost several queries against the very tables the controller is writing. The board holds what
a poll needs and is updated by :class:`~plughost.persistence.releases.Releases`, the one door
every release write goes through, right after each commit.

What the board holds is loaded lazily: a plugin's releases on its first poll, a name's recent
durations on its first ETA. A load races with writes, so each key carries a write counter: a
load installs its rows only if no write touched the key while it read them (otherwise the
next poll loads again). Readers never take a lock; writers replace immutable entries under
one lock. This is sound for one server process per database, which is what plughost supports
(see the README); several servers would each miss the others' writes.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from plughost.domain.release import ReleaseView
from plughost.domain.states import Status

DURATIONS_KEPT = 20
log = logging.getLogger("plughost.board")


@dataclass(frozen=True, slots=True)
class PluginReleases:
    """What status needs of one plugin in one namespace: its newest release and the live ones."""

    latest: ReleaseView | None
    deployed: tuple[ReleaseView, ...]  # by id, oldest first


PluginKey = tuple[str, int]  # (namespace_id, plugin_pk)


class ReleaseBoard:
    """Per-plugin latest and deployed releases, the queue order and recent deploy durations."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plugins: dict[PluginKey, PluginReleases] = {}
        self._plugin_writes: dict[PluginKey, int] = {}
        self._queued: list[int] | None = None  # sorted ids of queued releases, once loaded
        self._queue_writes = 0
        self._durations: dict[str | None, tuple[float, ...]] = {}  # None: every name
        self._duration_writes = 0
        # called after every write, by the writing thread, inside the releases' write lock:
        # listener(view, duration_s); the status watch and the metrics listen
        self.listeners: list[Callable[[ReleaseView, float | None], None]] = []

    # -- reads (no lock: entries are immutable and replaced whole) ---------------------------
    def plugin(self, key: PluginKey) -> PluginReleases | None:
        return self._plugins.get(key)

    def queue_position(self, release_id: int) -> int | None:
        """1-based position among queued releases; None until the queue is loaded."""
        queued = self._queued
        if queued is None:
            return None
        return bisect.bisect_left(queued, release_id) + 1

    def durations(self, name: str | None) -> tuple[float, ...] | None:
        """Newest first, at most DURATIONS_KEPT; None until loaded for this name."""
        return self._durations.get(name)

    def plugin_stamp(self, key: PluginKey) -> int:
        return self._plugin_writes.get(key, 0)

    def queue_stamp(self) -> int:
        return self._queue_writes

    def durations_stamp(self) -> int:
        return self._duration_writes

    # -- loads (install only when no write happened since the stamp was taken) ---------------
    def install_plugin(self, key: PluginKey, stamp: int, value: PluginReleases) -> None:
        with self._lock:
            if self._plugin_writes.get(key, 0) == stamp:
                self._plugins[key] = value

    def install_queue(self, stamp: int, ids: Iterable[int]) -> None:
        with self._lock:
            if self._queue_writes == stamp:
                self._queued = sorted(ids)

    def install_durations(self, name: str | None, stamp: int, values: Iterable[float]) -> None:
        with self._lock:
            if self._duration_writes == stamp:
                self._durations[name] = tuple(values)[:DURATIONS_KEPT]

    # -- writes (called by Releases after each commit) ---------------------------------------
    def changed(self, view: ReleaseView, duration_s: float | None = None) -> None:
        """A release was created or moved to ``view.status``."""
        key = (view.namespace_id, view.plugin_pk)
        with self._lock:
            self._plugin_writes[key] = self._plugin_writes.get(key, 0) + 1
            entry = self._plugins.get(key)
            if entry is not None:
                self._plugins[key] = _apply(entry, view)
            self._queue_writes += 1
            if self._queued is not None:
                queued = [i for i in self._queued if i != view.id]
                if view.status is Status.QUEUED:
                    bisect.insort(queued, view.id)
                self._queued = queued
            if duration_s is not None:
                self._duration_writes += 1
                for name in (view.name, None):
                    kept = self._durations.get(name)
                    if kept is not None:
                        self._durations[name] = (duration_s, *kept)[:DURATIONS_KEPT]
        for listener in self.listeners:
            try:
                listener(view, duration_s)
            except Exception:  # a listener never fails a release write
                log.exception("release board listener failed")

    def forget_plugin(self, plugin_pk: int) -> None:
        """The plugin was deleted (its releases went with it)."""
        with self._lock:
            for key in [k for k in self._plugins if k[1] == plugin_pk]:
                del self._plugins[key]
            for key in [k for k in self._plugin_writes if k[1] == plugin_pk]:
                self._plugin_writes[key] += 1
            self._queued = None  # reloaded on the next queued poll
            self._queue_writes += 1
            self._durations.clear()
            self._duration_writes += 1


def _apply(entry: PluginReleases, view: ReleaseView) -> PluginReleases:
    latest = entry.latest
    if latest is None or view.id >= latest.id:
        latest = view
    deployed = [r for r in entry.deployed if r.id != view.id]
    if view.status is Status.DEPLOYED:
        deployed.append(view)
        deployed.sort(key=lambda r: r.id)
    return PluginReleases(latest, tuple(deployed))
