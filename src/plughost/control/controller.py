"""The controller: one asyncio task driving releases `queued -> pending -> in_progress ->
deployed | failed`, blue-green, and keeping deployed releases served.

Each tick compares the releases table with the replica groups it holds, takes small steps and
never awaits a replica itself: rollouts, recoveries and drains run as tasks of their own.
A restart is just the first tick: deployed releases come back, interrupted ones run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plughost.backends.base import Backend, CallFailed, GroupSpec, ReplicaGroup, StartFailed
from plughost.config import Settings
from plughost.control.workspace import Workspace
from plughost.domain.ids import deployment_name_for
from plughost.domain.states import ROLLING, Status
from plughost.persistence.releases import Releases, ReleaseView
from plughost.routing.table import Route, RouteTable
from plughost.timeutil import utcnow

log = logging.getLogger("plughost.controller")


@dataclass(frozen=True)
class PluginRuntimeInfo:
    """What the controller needs to know of a plugin to run it."""

    storage_key: str
    manifest: dict[str, Any]


PluginInfoLoader = Callable[[int], PluginRuntimeInfo | None]


def replica_count(serve_config: dict[str, Any]) -> int:
    """`num_replicas`, else `min_replicas`, else 1; clamped to 1..16 on one machine."""
    raw = serve_config.get("num_replicas") or serve_config.get("min_replicas") or 1
    try:
        return max(1, min(16, int(raw)))
    except (TypeError, ValueError):
        return 1


class Controller:
    """Owns the replica groups and the route table; the releases table is the desired state."""

    def __init__(
        self,
        settings: Settings,
        releases: Releases,
        backend: Backend,
        routes: RouteTable,
        workspace: Workspace,
        plugin_info: PluginInfoLoader,
    ) -> None:
        self.settings = settings
        self.releases = releases
        self.backend = backend
        self.routes = routes
        self.workspace = workspace
        self.plugin_info = plugin_info
        self.groups: dict[int, ReplicaGroup] = {}
        self.tasks: dict[int, tuple[str, int, asyncio.Task[None]]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._no_recovery: set[int] = set()

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        while not self._stopping:
            try:
                await self.tick()
            except Exception:  # a tick must never kill the loop
                log.exception("reconcile tick failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.reconcile_interval_s)
            self._wake.clear()

    def wake(self) -> None:
        self._wake.set()

    async def tick(self) -> None:
        deployed = await asyncio.to_thread(self.releases.with_status, {Status.DEPLOYED})
        self._watch_serving(deployed)
        self._recover_missing(deployed)
        rolling = await asyncio.to_thread(self.releases.with_status, ROLLING)
        for rel in rolling:
            if rel.id not in self.tasks:
                self._spawn_rollout(rel)
        free = self.settings.max_concurrent_deployments - self._rollouts_running()
        if free > 0:
            queued = await asyncio.to_thread(self.releases.with_status, {Status.QUEUED})
            busy = {(ns, pk) for ns, pk, _ in self.tasks.values()}
            for rel in queued:
                if free <= 0:
                    break
                if (rel.namespace_id, rel.plugin_pk) in busy or rel.id in self.tasks:
                    continue  # queued behind a rollout of the same plugin
                busy.add((rel.namespace_id, rel.plugin_pk))
                self._spawn_rollout(rel)
                free -= 1

    def _rollouts_running(self) -> int:
        return len(self.tasks)

    def _track(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- serving releases ---------------------------------------------------------------------
    def _watch_serving(self, deployed: list[ReleaseView]) -> None:
        for rel in deployed:
            group = self.groups.get(rel.id)
            if group is None or rel.id in self.tasks:
                continue
            health = group.observe()
            if health.failed:
                # out of `groups` and barred from recovery now, so no later step of this or
                # the next tick restarts or fails it a second time
                self.groups.pop(rel.id, None)
                self._no_recovery.add(rel.id)
                self._track(
                    self._fail_serving(rel, group, health.error or "replicas keep crashing")
                )

    async def _fail_serving(self, rel: ReleaseView, group: ReplicaGroup, error: str) -> None:
        self.routes.withdraw(rel.namespace_id, rel.plugin_id, rel.id)
        await group.stop(0)
        moved = await asyncio.to_thread(
            self.releases.move,
            rel.id,
            Status.DEPLOYED,
            Status.FAILED,
            "replicas failed",
            error,
            finished_at=utcnow(),
        )
        if moved:
            await self._repoint_alias(rel.namespace_id, rel.name, rel.id)
        self.workspace.remove(rel.id)

    def _recover_missing(self, deployed: list[ReleaseView]) -> None:
        for rel in deployed:
            if rel.id in self.groups or rel.id in self.tasks or rel.id in self._no_recovery:
                continue
            task = asyncio.create_task(self._recover(rel))
            self.tasks[rel.id] = (rel.namespace_id, rel.plugin_pk, task)
            task.add_done_callback(lambda _t, rid=rel.id: self.tasks.pop(rid, None))

    async def _recover(self, rel: ReleaseView) -> None:
        """Bring a deployed release back after a restart (nothing serves it yet)."""
        try:
            group = await self._start_group(rel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any start failure fails the release, with its text
            self._no_recovery.add(rel.id)
            await asyncio.to_thread(
                self.releases.move,
                rel.id,
                Status.DEPLOYED,
                Status.FAILED,
                "could not be restored after a restart",
                _error_text(exc),
                finished_at=utcnow(),
            )
            return
        self.groups[rel.id] = group
        alias_target = await asyncio.to_thread(self.releases.alias, rel.namespace_id, rel.name)
        self.routes.publish(self._route(rel, group), alias=alias_target == rel.id)
        log.info("restored %s (release %s)", rel.plugin_id, rel.id)

    # -- rollouts -----------------------------------------------------------------------------
    def _spawn_rollout(self, rel: ReleaseView) -> None:
        task = asyncio.create_task(self._rollout(rel))
        self.tasks[rel.id] = (rel.namespace_id, rel.plugin_pk, task)
        task.add_done_callback(lambda _t, rid=rel.id: self._rollout_done(rid))

    def _rollout_done(self, release_id: int) -> None:
        self.tasks.pop(release_id, None)
        self.wake()

    async def _rollout(self, rel: ReleaseView) -> None:
        started = time.monotonic()
        status = rel.status
        group: ReplicaGroup | None = None
        plugin_dir: Path | None = None
        try:
            if status is Status.QUEUED:
                if not await asyncio.to_thread(
                    self.releases.move,
                    rel.id,
                    Status.QUEUED,
                    Status.PENDING,
                    "taken from the queue; preparing the plugin",
                    started_at=utcnow(),
                ):
                    return
                status = Status.PENDING
            if status is Status.PENDING:
                plugin_dir = await asyncio.to_thread(self._prepare, rel)
                if not await asyncio.to_thread(
                    self.releases.move,
                    rel.id,
                    Status.PENDING,
                    Status.IN_PROGRESS,
                    "blue-green rollout: starting new replicas beside the live ones",
                ):
                    return
                status = Status.IN_PROGRESS
            group = await self._start_group(rel, plugin_dir)
            self.groups[rel.id] = group
            await self._switch(rel, group, started)
        except asyncio.CancelledError:
            await self._abandon(
                rel, group, Status.NOT_DEPLOYED, "undeployed during the rollout", None
            )
            raise
        except Exception as exc:  # noqa: BLE001 - the plugin's own error becomes the release's
            log.info("release %s of %s failed: %s", rel.id, rel.plugin_id, exc)
            await self._abandon(rel, group, Status.FAILED, "deployment failed", _error_text(exc))

    def _prepare(self, rel: ReleaseView) -> Path:
        info = self.plugin_info(rel.plugin_pk)
        if info is None:
            raise StartFailed("the plugin was deleted")
        return self.workspace.prepare(rel.id, info.storage_key)

    async def _start_group(self, rel: ReleaseView, plugin_dir: Path | None = None) -> ReplicaGroup:
        """Start, health-check and smoke-test the release's replicas (unpacking it if needed)."""
        info = await asyncio.to_thread(self.plugin_info, rel.plugin_pk)
        if info is None:
            raise StartFailed("the plugin was deleted")
        if plugin_dir is None:
            plugin_dir = await asyncio.to_thread(self.workspace.prepare, rel.id, info.storage_key)
        serve_config = info.manifest.get("serve_config") or {}
        spec = GroupSpec(
            deployment_name=deployment_name_for(rel.plugin_id),
            release_id=rel.id,
            plugin_dir=plugin_dir,
            num_replicas=replica_count(serve_config),
            serve_config=serve_config,
            namespace_id=rel.namespace_id,
            requirements=tuple(str(d) for d in info.manifest.get("dependencies") or ()),
        )
        group = await self.backend.start(spec)
        try:
            if not await group.health():
                raise StartFailed("the new replicas did not pass the health call")
            example = info.manifest.get("example_input")
            if isinstance(example, dict):
                try:
                    await group.call(example, {})
                except CallFailed as exc:
                    raise StartFailed(f"smoke call with example_input failed: {exc}") from exc
        except BaseException:
            await group.stop(0)
            raise
        return group

    async def _switch(self, rel: ReleaseView, group: ReplicaGroup, started: float) -> None:
        """Switch traffic to the new group atomically, then retire the old release."""
        old = await asyncio.to_thread(
            self.releases.of_plugin, rel.namespace_id, rel.plugin_pk, {Status.DEPLOYED}
        )
        self.routes.publish(self._route(rel, group), alias=True)
        now = utcnow()
        moved = await asyncio.to_thread(
            self.releases.move,
            rel.id,
            Status.IN_PROGRESS,
            Status.DEPLOYED,
            f"serving realtime inference on {group.spec.num_replicas} replica(s)",
            deployed_at=now,
            finished_at=now,
            duration_s=time.monotonic() - started,
        )
        if not moved:
            raise StartFailed("the release changed state during the switch")
        await asyncio.to_thread(self.releases.set_alias, rel.namespace_id, rel.name, rel.id)
        for prev in old:
            if prev.id == rel.id:
                continue
            await asyncio.to_thread(
                self.releases.move,
                prev.id,
                Status.DEPLOYED,
                Status.SUPERSEDED,
                f"replaced by release {rel.id}",
                finished_at=now,
            )
            prev_group = self.groups.pop(prev.id, None)
            if prev_group is not None:
                self._track(self._retire(prev.id, prev_group))

    async def _retire(self, release_id: int, group: ReplicaGroup) -> None:
        await group.stop(self.settings.drain_timeout_s)
        self.workspace.remove(release_id)

    async def _abandon(
        self,
        rel: ReleaseView,
        group: ReplicaGroup | None,
        to: Status,
        message: str,
        error: str | None,
    ) -> None:
        self.groups.pop(rel.id, None)
        self.routes.withdraw(rel.namespace_id, rel.plugin_id, rel.id)
        if group is not None:
            await asyncio.shield(group.stop(0))
        current = await asyncio.to_thread(self.releases.get, rel.id)
        if current is not None and current.status in (Status.QUEUED, *ROLLING):
            await asyncio.to_thread(
                self.releases.move,
                rel.id,
                current.status,
                to,
                message,
                error,
                finished_at=utcnow(),
            )
        self.workspace.remove(rel.id)
        # a failed redeploy leaves the previous release serving; restore its routes
        await self._restore_previous(rel)

    async def _restore_previous(self, rel: ReleaseView) -> None:
        for prev in await asyncio.to_thread(
            self.releases.of_plugin, rel.namespace_id, rel.plugin_pk, {Status.DEPLOYED}
        ):
            group = self.groups.get(prev.id)
            if group is not None:
                alias = await asyncio.to_thread(self.releases.alias, prev.namespace_id, prev.name)
                self.routes.publish(self._route(prev, group), alias=alias == prev.id)

    @staticmethod
    def _route(rel: ReleaseView, group: ReplicaGroup) -> Route:
        return Route(rel.namespace_id, rel.plugin_id, rel.name, rel.version, rel.id, group)

    # -- requests from the API ------------------------------------------------------------------
    async def undeploy(self, namespace_id: str, plugin_pk: int) -> bool:
        """Cancel queued and rolling releases of the plugin and stop the serving one.
        Returns True when a live deployment was taken down."""
        for rid, (ns, pk, task) in list(self.tasks.items()):
            if ns == namespace_id and pk == plugin_pk:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        leftover = await asyncio.to_thread(
            self.releases.of_plugin,
            namespace_id,
            plugin_pk,
            {Status.QUEUED, Status.PENDING, Status.IN_PROGRESS},
        )
        for rel in leftover:
            await asyncio.to_thread(
                self.releases.move,
                rel.id,
                rel.status,
                Status.NOT_DEPLOYED,
                "undeployed",
                finished_at=utcnow(),
            )
        removed = False
        for rel in await asyncio.to_thread(
            self.releases.of_plugin, namespace_id, plugin_pk, {Status.DEPLOYED}
        ):
            self.routes.withdraw(namespace_id, rel.plugin_id, rel.id)
            # still `deployed` while its group drains: keep _recover_missing off it meanwhile
            self._no_recovery.add(rel.id)
            group = self.groups.pop(rel.id, None)
            if group is not None:
                await group.stop(self.settings.drain_timeout_s)
            await asyncio.to_thread(
                self.releases.move,
                rel.id,
                Status.DEPLOYED,
                Status.NOT_DEPLOYED,
                "undeployed",
                finished_at=utcnow(),
            )
            self.workspace.remove(rel.id)
            await self._repoint_alias(namespace_id, rel.name, rel.id)
            removed = True
        return removed

    async def _repoint_alias(self, namespace_id: str, name: str, gone_release: int) -> None:
        """After `gone_release` stopped serving, the alias follows the newest deployed version."""
        current = await asyncio.to_thread(self.releases.alias, namespace_id, name)
        if current not in (None, gone_release):
            return
        for rel in await asyncio.to_thread(self.releases.deployed_of_name, namespace_id, name):
            group = self.groups.get(rel.id)
            if group is not None:
                await asyncio.to_thread(self.releases.set_alias, namespace_id, name, rel.id)
                self.routes.set_alias(namespace_id, name, self._route(rel, group))
                return
        await asyncio.to_thread(self.releases.set_alias, namespace_id, name, None)
        self.routes.set_alias(namespace_id, name, None)

    async def point_alias(self, rel: ReleaseView) -> None:
        """Rollback: make a deployed release the alias target at once."""
        group = self.groups.get(rel.id)
        if group is None:
            raise StartFailed(f"{rel.plugin_id} is not serving on this server")
        await asyncio.to_thread(self.releases.set_alias, rel.namespace_id, rel.name, rel.id)
        self.routes.set_alias(rel.namespace_id, rel.name, self._route(rel, group))

    async def shutdown(self) -> None:
        self._stopping = True
        self.wake()
        for _, _, task in list(self.tasks.values()):
            task.cancel()
        for _, _, task in list(self.tasks.values()):
            with contextlib.suppress(BaseException):
                await task
        groups = list(self.groups.values())
        self.groups.clear()
        await asyncio.gather(*(g.stop(2.0) for g in groups), return_exceptions=True)
        await self.backend.shutdown()


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:4000]
