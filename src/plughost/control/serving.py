"""How a release stops or starts serving outside a rollout's switch: the controller's end
steps (a release whose replicas keep crashing fails, a rollout cut short is abandoned, a
drained group retires) and its restore step (a deployed release nothing serves on this
server, after a start or a takeover, comes back).

Each step stops what it was handed, writes the release's row through the controller's
store and fixes the routes; the controller decides when, and keeps the book of which group
serves which release: a group started here goes back to it through ``held``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from plughost.backends.base import ReplicaGroup
from plughost.control.launch import error_text
from plughost.control.store import ReleaseStore
from plughost.control.traffic import Traffic
from plughost.control.workspace import Workspace
from plughost.dataplane.routes import RouteTable
from plughost.domain.release import ReleaseView
from plughost.domain.states import ROLLING, Status
from plughost.timeutil import utcnow

log = logging.getLogger("plughost.controller")

StartGroup = Callable[[ReleaseView], Awaitable[ReplicaGroup]]


class Serving:
    """The end and restore steps of releases; remembers the releases it failed here, which
    this server never brings back (a crash loop is not retried by the next tick)."""

    def __init__(
        self,
        store: ReleaseStore,
        routes: RouteTable,
        workspace: Workspace,
        traffic: Traffic,
        start_group: StartGroup,
    ) -> None:
        self.store = store
        self.routes = routes
        self.workspace = workspace
        self.traffic = traffic
        self.start_group = start_group
        self._barred: set[int] = set()

    def bar(self, release_id: int) -> None:
        """Never bring the release back on this server (it failed here)."""
        self._barred.add(release_id)

    def barred(self, release_id: int) -> bool:
        return release_id in self._barred

    async def fail(self, rel: ReleaseView, group: ReplicaGroup, error: str) -> None:
        """A deployed release whose replicas keep crashing: its routes go, its group stops,
        it is recorded failed with ``error`` and its alias follows the newest deployed
        version. The caller took the group out of its book and barred the release."""
        self.routes.withdraw(rel.namespace_id, rel.id)
        await group.stop(0)
        moved = await self.store.move(
            rel.id,
            Status.DEPLOYED,
            Status.FAILED,
            "replicas failed",
            error,
            finished_at=utcnow(),
        )
        if moved:
            await self.traffic.repoint_alias(rel.namespace_id, rel.name, rel.id)
        self.workspace.remove(rel.id)

    async def restore(self, rel: ReleaseView, held: Callable[[int, ReplicaGroup], None]) -> None:
        """Bring a deployed release back (nothing serves it here yet): start its group, hand
        it to ``held(release_id, group)``, publish its routes. A start that fails fails the
        release, with its text, and bars it."""
        try:
            group = await self.start_group(rel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any start failure fails the release, with its text
            self.bar(rel.id)
            await self.store.move(
                rel.id,
                Status.DEPLOYED,
                Status.FAILED,
                "could not be restored after a restart",
                error_text(exc),
                finished_at=utcnow(),
            )
            return
        held(rel.id, group)
        alias_target = await self.store.alias(rel.namespace_id, rel.name)
        self.routes.publish(self.traffic.route(rel, group), alias=alias_target == rel.id)
        log.info("restored %s (release %s)", rel.plugin_id, rel.id)

    async def abandon(
        self,
        rel: ReleaseView,
        group: ReplicaGroup | None,
        to: Status,
        message: str,
        error: str | None,
    ) -> None:
        """A rollout that ends without a switch (cancelled, rolled back, failed): its routes
        and group go, a release still queued or rolling moves to ``to``, and the plugin's
        release still deployed gets its routes back. The caller took the group out of its
        book."""
        self.routes.withdraw(rel.namespace_id, rel.id)
        if group is not None:
            await asyncio.shield(group.stop(0))
        current = await self.store.get(rel.id)
        if current is not None and current.status in (Status.QUEUED, *ROLLING):
            await self.store.move(
                rel.id,
                current.status,
                to,
                message,
                error,
                finished_at=utcnow(),
            )
        self.workspace.remove(rel.id)
        # a failed redeploy leaves the previous release serving; restore its routes
        await self.traffic.restore_previous(rel)

    async def retire(self, release_id: int, group: ReplicaGroup, drain_timeout_s: float) -> None:
        """A group nothing routes to any more: drain it, stop it, remove the release's folder."""
        await group.stop(drain_timeout_s)
        self.workspace.remove(release_id)
