"""The plugin lookups the deployment side shares: by id for commands and status polls (with
an in-memory cache the polls read), and by primary key for the controller."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from plughost.control.controller import PluginRuntimeInfo
from plughost.domain.scope import PluginScope
from plughost.persistence.db import Database
from plughost.persistence.tables import Plugin
from plughost.services.cache import memory_or_load
from plughost.services.plugins import find_plugin


@dataclass(frozen=True)
class PluginRef:
    pk: int
    plugin_id: str
    name: str
    version: str
    has_realtime: bool


class PluginLookup:
    """Reads plugins for the deployment side and remembers the ids status polls ask for.

    Plugins are immutable once registered; deletion and disabling drop cached lookups through
    :meth:`forget`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # (organization_id, namespace_id, plugin_id) -> the plugin, for status polls
        self._refs: dict[tuple[str, str | None, str], PluginRef] = {}
        self._refs_generation = 0  # bumped by every removal: a lookup that raced one is not kept
        self._refs_lock = threading.Lock()

    def load(self, scope: PluginScope, plugin_id: str) -> tuple[PluginRef, Plugin]:
        """The plugin (detached from its session) and its ref, from the database; NotFoundError
        when the scope has no such plugin. Remembers the ref for :meth:`ref`."""
        generation = self._refs_generation
        with self.db.session() as s:
            p = find_plugin(s, scope, plugin_id)
            s.expunge(p)
            ref = PluginRef(p.id, p.plugin_id, p.name, p.version, p.has_realtime)
        with self._refs_lock:
            if generation == self._refs_generation:  # no plugin was removed while we read
                self._refs[(scope.organization_id, scope.namespace_id, plugin_id)] = ref
        return ref, p

    def ref(self, scope: PluginScope, plugin_id: str, cached_only: bool) -> PluginRef:
        """The plugin as status needs it: from the lookup cache, else (unless cached_only, which
        raises NotCached) from the database."""
        return memory_or_load(
            self._refs.get((scope.organization_id, scope.namespace_id, plugin_id)),
            lambda: self.load(scope, plugin_id)[0],
            cached_only,
        )

    def info(self, plugin_pk: int) -> PluginRuntimeInfo | None:
        """What the controller needs to start a release of the plugin; None once deleted."""
        with self.db.session() as s:
            p = s.get(Plugin, plugin_pk)
            if p is None:
                return None
            return PluginRuntimeInfo(storage_key=p.storage_key, manifest=dict(p.manifest or {}))

    def forget(self, plugin_pk: int) -> None:
        """Drop every cached lookup of the plugin (deleted, or disabled in a namespace)."""
        with self._refs_lock:
            self._refs_generation += 1
            for key in [k for k, ref in self._refs.items() if ref.pk == plugin_pk]:
                del self._refs[key]
