"""Route table: an immutable snapshot replaced whole on every change (no locks on reads)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from random import random
from types import MappingProxyType

from plughost.backends.base import ReplicaGroup
from plughost.domain.ids import deployment_name_for


@dataclass(frozen=True)
class Route:
    namespace_id: str
    plugin_id: str
    name: str
    version: str
    release_id: int
    group: ReplicaGroup
    # a canary step: this share of the calls goes to `canary` instead
    canary: Route | None = None
    canary_share: float = 0.0

    def pick(self) -> Route:
        """The route this call takes: itself, or its canary for ``canary_share`` of calls."""
        if self.canary is not None and random() < self.canary_share:
            return self.canary
        return self


class RouteTable:
    """Maps (namespace_id, route name) to a Route. Route names are deployment names
    (`custom_plugin_{plugin_id}`), plugin ids and aliases (plugin names)."""

    def __init__(self) -> None:
        self._snapshot: Mapping[tuple[str, str], Route] = MappingProxyType({})

    def lookup(self, namespace_id: str, route_name: str) -> Route | None:
        return self._snapshot.get((namespace_id, route_name))

    def _swap(self, changes: dict[tuple[str, str], Route | None]) -> None:
        new = dict(self._snapshot)
        for key, route in changes.items():
            if route is None:
                new.pop(key, None)
            else:
                new[key] = route
        self._snapshot = MappingProxyType(new)

    def publish(self, route: Route, alias: bool) -> None:
        """Point the deployment name and plugin id (and the alias when asked) at `route`."""
        ns = route.namespace_id
        changes: dict[tuple[str, str], Route | None] = {
            (ns, deployment_name_for(route.plugin_id)): route,
            (ns, route.plugin_id): route,
        }
        if alias:
            changes[(ns, route.name)] = route
        self._swap(changes)

    def set_alias(self, namespace_id: str, name: str, route: Route | None) -> None:
        self._swap({(namespace_id, name): route})

    def split_alias(self, old: Route, new: Route, share: float) -> None:
        """Point the alias of ``old``'s name at ``old`` with ``share`` (0..1) of its calls
        going to ``new``: a canary step (one weighted draw per call, no lock)."""
        self._swap({(old.namespace_id, old.name): replace(old, canary=new, canary_share=share)})

    def withdraw(self, namespace_id: str, release_id: int) -> None:
        """Remove every route (incl. an alias) that still points at `release_id`."""
        changes: dict[tuple[str, str], Route | None] = {
            key: None
            for key, route in self._snapshot.items()
            if key[0] == namespace_id and route.release_id == release_id
        }
        self._swap(changes)


    def replace_all(self, table: Mapping[tuple[str, str], Route]) -> bool:
        """Swap in a whole new table (a follower's, built from the database); False when
        it equals the current one (nothing swapped)."""
        if dict(self._snapshot) == dict(table):
            return False
        self._snapshot = MappingProxyType(dict(table))
        return True

    def drop_where(self, unwanted: Callable[[Route], bool]) -> None:
        """Remove every route for which ``unwanted(route)`` holds."""
        changes: dict[tuple[str, str], Route | None] = {
            key: None for key, route in self._snapshot.items() if unwanted(route)
        }
        if changes:
            self._swap(changes)
