"""The controller: one asyncio task driving releases `queued -> pending -> in_progress ->
deployed | failed`, blue-green, and keeping deployed releases served.

The API only writes desired state (services/deployments.py: a deploy queues a release; an
undeploy, a delete or a disable moves the plugin's releases to not_deployed and moves its
aliases; a rollback moves an alias), each in one transaction with its event rows. Each
:meth:`Controller.tick` compares that state (the releases and aliases tables) with the
replica groups and routes this server holds and takes small idempotent steps: it starts
rollouts and recoveries, cancels rollouts and drains groups nothing wants any more, and
points alias routes where the aliases table says. It never awaits a replica itself:
rollouts, recoveries and drains run as tasks of their own. A restart is just the first
tick: deployed releases come back, interrupted ones run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from plughost.backends.base import Backend, CallFailed, GroupSpec, ReplicaGroup, StartFailed
from plughost.config import Settings
from plughost.control.canary import RolledBack
from plughost.control.guard import Guard
from plughost.control.restore import Restores
from plughost.control.store import ReleaseStore
from plughost.control.workspace import Workspace
from plughost.domain.ids import deployment_name_for
from plughost.domain.release import ReleaseView
from plughost.domain.rollout import RolloutOptions
from plughost.domain.states import ROLLING, Status
from plughost.envs import PluginEnvironments
from plughost.envs.stage import dependencies_of
from plughost.logs.capture import REPLICA_OUTPUT, Sink
from plughost.metrics.requests import RequestMetrics
from plughost.persistence.releases import Releases
from plughost.routing.table import Route, RouteTable
from plughost.timeutil import utcnow

log = logging.getLogger("plughost.controller")

# the releases a tick looks at: everything else runs nothing
LIVE = frozenset({Status.QUEUED, *ROLLING, Status.DEPLOYED})


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
        self.store = ReleaseStore(releases)
        self.backend = backend
        self.routes = routes
        self.workspace = workspace
        self.plugin_info = plugin_info
        self.envs = PluginEnvironments.from_settings(settings)
        self.groups: dict[int, ReplicaGroup] = {}
        self.tasks: dict[int, tuple[str, int, asyncio.Task[None]]] = {}
        self._tasks_ended = 0  # rollouts and recoveries ended so far (see _read_live)
        self._switching: set[tuple[str, str]] = set()  # (namespace, alias name) mid-switch
        self._cancellable: set[int] = set()  # tasks not yet finishing (failing or switching)
        self._draining: dict[int, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._tick_lock = asyncio.Lock()
        self._stopping = False
        self._no_recovery: set[int] = set()
        # deployed releases being brought back after a server start; calls wait on them
        self.restores = Restores()
        # the release's last log lines, appended to its failure text (set by the runtime)
        self.last_lines: Callable[[int], list[str]] | None = None
        # the sink of a release's replica output lines (set by the runtime; plughost.logs)
        self.replica_output: Callable[[ReleaseView], Sink] | None = None
        # the inference path's per-release counters, which the rollout guard reads (issue 17)
        self.request_metrics: RequestMetrics | None = None
        # several servers on one database: whether this one holds the controller lease now
        # (plughost.control.leader); a tick on any other server does nothing
        self.gate: Callable[[], bool] | None = None
        self._led = False  # whether this server ever ran a tick (held the lease)

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
        """One reconcile pass of desired state against what this server runs; idempotent,
        and serialised (the loop and :meth:`converge` both tick)."""
        if self.gate is not None and not self.gate():
            return
        self._led = True
        async with self._tick_lock:
            live = await self._read_live()
            self._drop_unwanted(live)
            deployed = [rel for rel in live.values() if rel.status is Status.DEPLOYED]
            self._watch_serving(deployed)
            self._recover_missing(deployed)
            self.restores.scanned()
            self._start_rollouts(list(live.values()))
            await self._sync_aliases(live)

    async def _read_live(self) -> dict[int, ReleaseView]:
        """The live releases, read while no rollout or recovery ended: one that ends during
        the read leaves its row stale (in_progress with no task), and a tick on it would start
        the release a second time or drain a group just deployed."""
        while True:
            ended = self._tasks_ended
            live = {rel.id: rel for rel in await self.store.with_status(LIVE)}
            if ended == self._tasks_ended:
                return live

    async def converge(self, release_ids: Collection[int] = ()) -> None:
        """Tick now, then wait until nothing on this server runs ``release_ids`` any more
        (their rollouts ended, their replicas drained and stopped): for API calls that
        changed the desired state and answer once it holds."""
        ids = set(release_ids)
        while True:
            await self.tick()
            waiting = [task for rid, (_, _, task) in self.tasks.items() if rid in ids]
            waiting += [task for rid, task in self._draining.items() if rid in ids]
            if not waiting and not ids & self.groups.keys():
                return
            if waiting:
                await asyncio.wait(waiting)
            else:
                await asyncio.sleep(self.settings.reconcile_interval_s)

    def serving(self, release_id: int) -> bool:
        """Whether this server runs replicas of the release."""
        return release_id in self.groups

    def _drop_unwanted(self, live: dict[int, ReleaseView]) -> None:
        """Cancel rollouts and recoveries of releases no longer wanted; withdraw and drain
        groups whose release is no longer deployed (undeployed, deleted, failed)."""
        for rid, (_, _, task) in list(self.tasks.items()):
            if rid not in live and rid in self._cancellable:
                self._cancellable.discard(rid)
                task.cancel()
        for rid in [rid for rid in self.groups if rid not in self.tasks]:
            rel = live.get(rid)
            if rel is None or rel.status is not Status.DEPLOYED:
                group = self.groups.pop(rid)
                self.routes.withdraw(group.spec.namespace_id or "", rid)
                self._drain(rid, group)

    def _start_rollouts(self, live: list[ReleaseView]) -> None:
        for rel in live:
            if rel.status in ROLLING and rel.id not in self.tasks:
                self._spawn_rollout(rel)
        free = self.settings.max_concurrent_deployments - self._rollouts_running()
        busy = {(ns, pk) for ns, pk, _ in self.tasks.values()}
        for rel in live:
            if free <= 0:
                break
            if rel.status is not Status.QUEUED:
                continue
            if (rel.namespace_id, rel.plugin_pk) in busy or rel.id in self.tasks:
                continue  # queued behind a rollout of the same plugin
            busy.add((rel.namespace_id, rel.plugin_pk))
            self._spawn_rollout(rel)
            free -= 1

    async def _sync_aliases(self, live: dict[int, ReleaseView]) -> None:
        """Point each alias route at the release the aliases table names, when this server
        runs it. A name whose rollout is switching is left to that switch (it publishes the
        route first, then writes the alias)."""
        for (namespace_id, name), rid in (await self.store.aliases()).items():
            group, rel = self.groups.get(rid), live.get(rid)
            if group is None or rel is None or (namespace_id, name) in self._switching:
                continue
            current = self.routes.lookup(namespace_id, name)
            if current is None or current.release_id != rid:
                self.routes.set_alias(namespace_id, name, self._route(rel, group))

    def _rollouts_running(self) -> int:
        return len(self.tasks)

    def _track(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _drain(self, release_id: int, group: ReplicaGroup) -> None:
        """Retire ``group`` in the background; :meth:`converge` can wait for it."""
        task = asyncio.create_task(self._retire(release_id, group))
        self._draining[release_id] = task
        task.add_done_callback(lambda _t: self._draining.pop(release_id, None))

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
            await self._repoint_alias(rel.namespace_id, rel.name, rel.id)
        self.workspace.remove(rel.id)

    def _recover_missing(self, deployed: list[ReleaseView]) -> None:
        for rel in deployed:
            if rel.id in self.groups or rel.id in self.tasks or rel.id in self._no_recovery:
                continue
            self.restores.begin(rel)
            task = asyncio.create_task(self._recover(rel))
            self.tasks[rel.id] = (rel.namespace_id, rel.plugin_pk, task)
            self._cancellable.add(rel.id)
            task.add_done_callback(lambda _t, rid=rel.id: self._recovery_done(rid))

    def _recovery_done(self, release_id: int) -> None:
        self._task_done(release_id)
        self.restores.end(release_id)

    async def _recover(self, rel: ReleaseView) -> None:
        """Bring a deployed release back after a restart (nothing serves it yet)."""
        try:
            group = await self._start_group(rel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any start failure fails the release, with its text
            self._no_recovery.add(rel.id)
            await self.store.move(
                rel.id,
                Status.DEPLOYED,
                Status.FAILED,
                "could not be restored after a restart",
                _error_text(exc),
                finished_at=utcnow(),
            )
            return
        self.groups[rel.id] = group
        alias_target = await self.store.alias(rel.namespace_id, rel.name)
        self.routes.publish(self._route(rel, group), alias=alias_target == rel.id)
        log.info("restored %s (release %s)", rel.plugin_id, rel.id)

    # -- rollouts -----------------------------------------------------------------------------
    def _spawn_rollout(self, rel: ReleaseView) -> None:
        task = asyncio.create_task(self._rollout(rel))
        self.tasks[rel.id] = (rel.namespace_id, rel.plugin_pk, task)
        self._cancellable.add(rel.id)
        task.add_done_callback(lambda _t, rid=rel.id: self._rollout_done(rid))

    def _task_done(self, release_id: int) -> None:
        self._tasks_ended += 1
        self.tasks.pop(release_id, None)
        self._cancellable.discard(release_id)

    def _rollout_done(self, release_id: int) -> None:
        self._task_done(release_id)
        self.wake()

    async def _rollout(self, rel: ReleaseView) -> None:
        started = time.monotonic()
        status = rel.status
        group: ReplicaGroup | None = None
        plugin_dir: Path | None = None
        try:
            if status is Status.QUEUED:
                if not await self.store.move(
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
                await self._build_environment(rel, plugin_dir)
                if not await self.store.move(
                    rel.id,
                    Status.PENDING,
                    Status.IN_PROGRESS,
                    "blue-green rollout: starting new replicas beside the live ones",
                ):
                    return
                status = Status.IN_PROGRESS
            group = await self._start_group(rel, plugin_dir)
            self.groups[rel.id] = group
            self._switching.add((rel.namespace_id, rel.name))
            try:
                await self._guarded_switch(rel, group, started)
            finally:
                self._switching.discard((rel.namespace_id, rel.name))
        except asyncio.CancelledError:
            await self._abandon(
                rel, group, Status.NOT_DEPLOYED, "undeployed during the rollout", None
            )
            raise
        except RolledBack as exc:  # the guard's figures are the whole story
            log.info("release %s of %s rolled back: %s", rel.id, rel.plugin_id, exc)
            await self._abandon(rel, group, Status.FAILED, "rolled back", str(exc))
        except Exception as exc:  # noqa: BLE001 - the plugin's own error becomes the release's
            log.info("release %s of %s failed: %s", rel.id, rel.plugin_id, exc)
            error = await self._with_last_lines(rel.id, _error_text(exc))
            await self._abandon(rel, group, Status.FAILED, "deployment failed", error)

    async def _with_last_lines(self, release_id: int, error: str) -> str:
        """The failure text followed by the release's last log lines (issue 13)."""
        if self.last_lines is None:
            return error
        await asyncio.sleep(0.1)  # let the dead replica's output pipe drain into the store
        lines = await asyncio.to_thread(self.last_lines, release_id)  # the log store, not Releases
        return f"{error}\n--- last log lines ---\n" + "\n".join(lines) if lines else error

    def _prepare(self, rel: ReleaseView) -> Path:
        info = self.plugin_info(rel.plugin_pk)
        if info is None:
            raise StartFailed("the plugin was deleted")
        return self.workspace.prepare(rel.id, info.storage_key)

    async def _build_environment(self, rel: ReleaseView, plugin_dir: Path) -> None:
        """Pending phase: build or find the plugin environment (plughost.envs), saying which
        in the release's status message."""
        info = await asyncio.to_thread(self.plugin_info, rel.plugin_pk)
        if info is None:
            raise StartFailed("the plugin was deleted")

        async def note(message: str) -> None:
            await self.store.note(rel.id, Status.PENDING, message)

        await self.envs.prepare(rel.id, dependencies_of(info.manifest), plugin_dir, note)

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
            requirements=dependencies_of(info.manifest),
            # found at once after the pending phase built it; built here after a restart
            env_path=await self.envs.prepare(rel.id, dependencies_of(info.manifest), plugin_dir),
        )
        sink = self.replica_output(rel) if self.replica_output is not None else None
        token = REPLICA_OUTPUT.set(sink)  # the replicas' output tasks inherit it (logs.capture)
        try:
            group = await self.backend.start(spec)
        finally:
            REPLICA_OUTPUT.reset(token)
        try:
            if not await group.health():
                raise StartFailed("the new replicas did not pass the health call")
            example = info.manifest.get("example_input")
            if isinstance(example, dict):
                try:
                    await group.call_body(orjson.dumps({"inputs": example, "parameters": {}}))
                except CallFailed as exc:
                    raise StartFailed(f"smoke call with example_input failed: {exc}") from exc
        except BaseException:
            await group.stop(0)
            raise
        return group

    async def _guarded_switch(self, rel: ReleaseView, group: ReplicaGroup, started: float) -> None:
        """Canary steps or a bake window against the release the alias serves (issue 17),
        then the switch. Unguarded: a first deploy, a redeploy of the same plugin id (one
        series of counters), a bake of 0 s."""
        options = RolloutOptions.from_json(rel.rollout)
        old = await self._alias_route_of_other(rel)
        if old is not None and self.request_metrics is not None:
            new_route = self._route(rel, group)
            self.routes.publish(new_route, alias=False)

            async def note(message: str) -> None:
                await self.store.note(rel.id, Status.IN_PROGRESS, message)

            await Guard(options, self.request_metrics, self.routes, old, new_route, note).run()
        await self._switch(rel, group, started)

    async def _alias_route_of_other(self, rel: ReleaseView) -> Route | None:
        """The plain route of the release the alias of ``rel``'s name reaches, when this
        server serves it and it is another plugin id."""
        target = await self.store.alias(rel.namespace_id, rel.name)
        group = self.groups.get(target) if target is not None else None
        prev = await self.store.get(target) if group is not None and target is not None else None
        if prev is None or group is None or prev.plugin_id == rel.plugin_id:
            return None
        return self._route(prev, group)

    async def _switch(self, rel: ReleaseView, group: ReplicaGroup, started: float) -> None:
        """Switch traffic to the new group atomically, then retire the old release."""
        old = await self.store.of_plugin(rel.namespace_id, rel.plugin_pk, {Status.DEPLOYED})
        self.routes.publish(self._route(rel, group), alias=True)
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
            prev_group = self.groups.pop(prev.id, None)
            if prev_group is not None:
                self._drain(prev.id, prev_group)

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
        self._cancellable.discard(rel.id)  # finishing: a tick must not cut this short
        self.groups.pop(rel.id, None)
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
        await self._restore_previous(rel)

    async def _restore_previous(self, rel: ReleaseView) -> None:
        for prev in await self.store.of_plugin(rel.namespace_id, rel.plugin_pk, {Status.DEPLOYED}):
            group = self.groups.get(prev.id)
            if group is not None:
                alias = await self.store.alias(prev.namespace_id, prev.name)
                self.routes.publish(self._route(prev, group), alias=alias == prev.id)

    @staticmethod
    def _route(rel: ReleaseView, group: ReplicaGroup) -> Route:
        return Route(rel.namespace_id, rel.plugin_id, rel.name, rel.version, rel.id, group)

    async def _repoint_alias(self, namespace_id: str, name: str, gone_release: int) -> None:
        """After `gone_release` stopped serving, the alias follows the newest deployed version."""
        current = await self.store.alias(namespace_id, name)
        if current not in (None, gone_release):
            return
        for rel in await self.store.deployed_of_name(namespace_id, name):
            group = self.groups.get(rel.id)
            if group is not None:
                await self.store.set_alias(namespace_id, name, rel.id, "undeploy")
                self.routes.set_alias(namespace_id, name, self._route(rel, group))
                return
        await self.store.set_alias(namespace_id, name, None, "undeploy")
        self.routes.set_alias(namespace_id, name, None)

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
        if not getattr(self.backend, "keeps_replicas_on_stop", False):  # issue 14
            await asyncio.gather(*(g.stop(2.0) for g in groups), return_exceptions=True)
        if self.gate is not None and not self._led:
            return  # a follower started nothing; what the backend reaches is the leader's
        await self.backend.shutdown()


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:4000]
