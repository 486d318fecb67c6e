"""Where calls go: the controller's route and alias steps.

A release's routes are published once its replicas pass their checks; its plugin's alias
moves to it in the same transaction that records it deployed (after the rollout guard, when
one runs, passed on live traffic). When a release stops serving, its name's alias follows the
newest deployed release of that name. :class:`Traffic` takes these steps against the route
table (what this server routes) and the releases table (the aliases, the desired state); it
reads the controller's groups and never starts or stops one: a superseded release's group
goes back to the controller to drain.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping

from plughost.backends.base import ReplicaGroup, StartFailed
from plughost.control.guard import Guard
from plughost.control.store import ReleaseStore
from plughost.dataplane.routes import Route, RouteTable
from plughost.domain.ids import deployment_name_for
from plughost.domain.release import ReleaseView
from plughost.domain.rollout import RolloutOptions
from plughost.domain.states import Status
from plughost.metrics.requests import RequestMetrics
from plughost.timeutil import utcnow


class Traffic:
    """Route and alias steps over ``groups`` (the controller's, by release id; read only)."""

    def __init__(
        self, store: ReleaseStore, routes: RouteTable, groups: Mapping[int, ReplicaGroup]
    ) -> None:
        self.store = store
        self.routes = routes
        self.groups = groups

    @staticmethod
    def route(rel: ReleaseView, group: ReplicaGroup) -> Route:
        return Route(rel.namespace_id, rel.plugin_id, rel.name, rel.version, rel.id, group)

    async def sync_aliases(
        self, live: Mapping[int, ReleaseView], switching: Collection[tuple[str, str]]
    ) -> None:
        """Point each alias route at the release the aliases table names, when this server
        runs it. A name in ``switching`` (namespace, name) is left to its rollout's switch
        (which publishes the route first, then writes the alias)."""
        for (namespace_id, name), rid in (await self.store.aliases()).items():
            group, rel = self.groups.get(rid), live.get(rid)
            if group is None or rel is None or (namespace_id, name) in switching:
                continue
            current = self.routes.lookup(namespace_id, name)
            if current is None or current.release_id != rid:
                self.routes.set_alias(namespace_id, name, self.route(rel, group))

    async def guard(
        self, rel: ReleaseView, group: ReplicaGroup, metrics: RequestMetrics | None
    ) -> None:
        """Canary steps or a bake window against the release the alias serves
        (plughost.control.guard); RolledBack on a breach. Unguarded: a first deploy, a
        redeploy of the same plugin id (one series of counters), a bake of 0 s, no counters."""
        options = RolloutOptions.from_json(rel.rollout)
        old = await self._alias_route_of_other(rel)
        if old is None or metrics is None:
            return
        new_route = self.route(rel, group)
        self.routes.publish(new_route, alias=False)

        async def note(message: str) -> None:
            await self.store.note(rel.id, Status.IN_PROGRESS, message)

        await Guard(options, metrics, self.routes, old, new_route, note).run()

    async def _alias_route_of_other(self, rel: ReleaseView) -> Route | None:
        """The plain route of the release the alias of ``rel``'s name reaches, when this
        server serves it and it is another plugin id."""
        target = await self.store.alias(rel.namespace_id, rel.name)
        group = self.groups.get(target) if target is not None else None
        if group is None or group.spec.deployment_name == deployment_name_for(rel.plugin_id):
            return None  # a redeploy of the same plugin id: known without reading its row
        prev = await self.store.get(target) if target is not None else None
        if prev is None or prev.plugin_id == rel.plugin_id:
            return None
        return self.route(prev, group)

    async def switch(
        self,
        rel: ReleaseView,
        group: ReplicaGroup,
        started: float,
        superseded: Callable[[int], None],
        old: list[ReleaseView] | None = None,
    ) -> None:
        """Switch traffic to the new group atomically and record the release deployed (its
        alias moves in the same transaction); then mark the plugin's previously deployed
        releases superseded, calling ``superseded(release_id)`` for each at once so the
        controller drains its group. StartFailed when the release moved on meanwhile.

        ``old``: the plugin's deployed releases when the caller read them already (during
        the guard: only this rollout can deploy one of the plugin's releases, so the list
        can only have shrunk since, and superseding one that left meanwhile does nothing)."""
        if old is None:
            old = await self.deployed_of_plugin(rel)
        self.routes.publish(self.route(rel, group), alias=True)
        now = utcnow()
        moved = await self.store.move(
            rel.id,
            Status.IN_PROGRESS,
            Status.DEPLOYED,
            f"serving realtime inference on {group.spec.num_replicas} replica(s)",
            deployed_at=now,
            finished_at=now,
            duration_s=time.monotonic() - started,
            alias_reason="deploy",  # the alias moves in the same transaction
        )
        if not moved:
            raise StartFailed("the release changed state during the switch")
        for prev in old:
            if prev.id == rel.id:
                continue
            await self.store.move(
                prev.id,
                Status.DEPLOYED,
                Status.SUPERSEDED,
                f"replaced by release {rel.id}",
                finished_at=now,
            )
            superseded(prev.id)

    async def deployed_of_plugin(self, rel: ReleaseView) -> list[ReleaseView]:
        """The releases of ``rel``'s plugin deployed now."""
        return await self.store.of_plugin(rel.namespace_id, rel.plugin_pk, {Status.DEPLOYED})

    async def restore_previous(self, rel: ReleaseView) -> None:
        """After a failed redeploy of ``rel``'s plugin: the release still deployed gets its
        routes back (the guard or the switch may have moved them)."""
        for prev in await self.store.of_plugin(rel.namespace_id, rel.plugin_pk, {Status.DEPLOYED}):
            group = self.groups.get(prev.id)
            if group is not None:
                alias = await self.store.alias(prev.namespace_id, prev.name)
                self.routes.publish(self.route(prev, group), alias=alias == prev.id)

    async def repoint_alias(self, namespace_id: str, name: str, gone_release: int) -> None:
        """After `gone_release` stopped serving, the alias follows the newest deployed version."""
        current = await self.store.alias(namespace_id, name)
        if current not in (None, gone_release):
            return
        for rel in await self.store.deployed_of_name(namespace_id, name):
            group = self.groups.get(rel.id)
            if group is not None:
                await self.store.set_alias(namespace_id, name, rel.id, "undeploy")
                self.routes.set_alias(namespace_id, name, self.route(rel, group))
                return
        await self.store.set_alias(namespace_id, name, None, "undeploy")
        self.routes.set_alias(namespace_id, name, None)
