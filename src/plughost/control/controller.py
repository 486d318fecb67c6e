"""The controller: one asyncio task driving releases `queued -> pending -> in_progress ->
deployed | failed`, blue-green, and keeping deployed releases served.

The API only writes desired state (services/deploy.py: a deploy queues a release; an
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
from pathlib import Path
from typing import Any

from plughost.backends.base import Backend, ReplicaGroup
from plughost.config import Settings
from plughost.control.canary import RolledBack
from plughost.control.launch import (
    Launcher,
    PluginInfoLoader,
    PluginRuntimeInfo,
    error_text,
    replica_count,
    together,
)
from plughost.control.restore import Restores
from plughost.control.serving import Serving
from plughost.control.store import ReleaseStore
from plughost.control.traffic import Traffic
from plughost.control.workspace import Workspace
from plughost.dataplane.routes import RouteTable
from plughost.domain.release import ReleaseView
from plughost.domain.states import ROLLING, Status
from plughost.envs import PluginEnvironments
from plughost.logs.capture import Sink
from plughost.metrics.requests import RequestMetrics
from plughost.persistence.releases import Fence, Releases
from plughost.timeutil import utcnow

__all__ = ["LIVE", "Controller", "PluginInfoLoader", "PluginRuntimeInfo", "replica_count"]

log = logging.getLogger("plughost.controller")

# the releases a tick looks at: everything else runs nothing
LIVE = frozenset({Status.QUEUED, *ROLLING, Status.DEPLOYED})


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
        *,
        last_lines: Callable[[int], list[str]] | None = None,
        replica_output: Callable[[ReleaseView], Sink] | None = None,
        request_metrics: RequestMetrics | None = None,
        gate: Callable[[], bool] | None = None,
        fence: Fence | None = None,
    ) -> None:
        self.settings = settings
        self.releases = releases
        # several servers on one database: a pass runs only while ``gate()`` says this server
        # leads, and every write checks the lease (``fence``); both None on one server
        self.store = ReleaseStore(releases, fence)
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
        # deployed releases being brought back after a server start; calls wait on them
        self.restores = Restores()
        # the release's last log lines (the log store), appended to its failure text
        self.last_lines = last_lines
        # the sink of a release's replica output lines (plughost.logs)
        self.replica_output = replica_output
        # the inference path's per-release counters, which the rollout guard reads
        self.request_metrics = request_metrics
        # several servers on one database: whether this one holds the controller lease now
        # (plughost.cluster.election); a tick on any other server does nothing
        self.gate = gate
        self._led = False  # whether this server ever ran a tick (held the lease)
        self._paused = False  # a takeover holds every pass (see pause)
        self._launcher = Launcher(backend, workspace, self.envs, plugin_info, self.store)
        self._traffic = Traffic(self.store, routes, self.groups)
        self._serving = Serving(self.store, routes, workspace, self._traffic, self._start_group)

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

    async def pause(self, rollout_wait_s: float) -> bool:
        """Hold every pass from now on (a takeover: the successor runs the controller next).
        Returns once a pass under way ended, after waiting up to ``rollout_wait_s`` for the
        rollouts and recoveries in flight to end; False when some still run then (they
        go on; the successor resumes them from their release rows). Routes and replicas
        keep serving. :meth:`resume` undoes it."""
        self._paused = True
        deadline = time.monotonic() + rollout_wait_s
        finished = True
        while any(not task.done() for *_, task in self.tasks.values()):
            if time.monotonic() > deadline:
                finished = False
                break
            await asyncio.sleep(0.1)
        async with self._tick_lock:  # a pass under way ends first
            pass
        return finished

    def resume(self) -> None:
        """Run passes again after :meth:`pause` (a takeover that did not happen), one now."""
        self._paused = False
        self.wake()

    async def tick(self) -> None:
        """One reconcile pass of desired state against what this server runs; idempotent,
        and serialised (the loop and :meth:`converge` both tick). Nothing while paused or
        while another server holds the controller lease."""
        if self._paused or (self.gate is not None and not self.gate()):
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
            await self._traffic.sync_aliases(live, self._switching)

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

    def _rollouts_running(self) -> int:
        return len(self.tasks)

    def _track(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _drain(self, release_id: int, group: ReplicaGroup) -> None:
        """Retire ``group`` in the background; :meth:`converge` can wait for it."""
        task = asyncio.create_task(
            self._serving.retire(release_id, group, self.settings.drain_timeout_s)
        )
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
                self._serving.bar(rel.id)
                self._track(
                    self._serving.fail(rel, group, health.error or "replicas keep crashing")
                )

    def _recover_missing(self, deployed: list[ReleaseView]) -> None:
        for rel in deployed:
            if rel.id in self.groups or rel.id in self.tasks or self._serving.barred(rel.id):
                continue
            self.restores.begin(rel)
            task = asyncio.create_task(self._serving.restore(rel, self._hold))
            self.tasks[rel.id] = (rel.namespace_id, rel.plugin_pk, task)
            self._cancellable.add(rel.id)
            task.add_done_callback(lambda _t, rid=rel.id: self._recovery_done(rid))

    def _hold(self, release_id: int, group: ReplicaGroup) -> None:
        self.groups[release_id] = group

    def _recovery_done(self, release_id: int) -> None:
        self._task_done(release_id)
        self.restores.end(release_id)

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
                # the unpack does not wait for the status write (both are I/O in threads)
                moved, plugin_dir = await together(
                    self.store.move(
                        rel.id, Status.QUEUED, Status.PENDING,
                        "taken from the queue; preparing the plugin", started_at=utcnow(),
                    ),
                    asyncio.to_thread(self._launcher.prepare, rel),
                )
                if not moved:
                    return
                status = Status.PENDING
            if status is Status.PENDING:
                if plugin_dir is None:
                    plugin_dir = await asyncio.to_thread(self._launcher.prepare, rel)
                await self._launcher.build_environment(rel, plugin_dir)
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
                old, _ = await asyncio.gather(
                    self._traffic.deployed_of_plugin(rel),
                    self._traffic.guard(rel, group, self.request_metrics),
                )
                await self._traffic.switch(rel, group, started, self._supersede, old)
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
            error = await self._with_last_lines(rel.id, error_text(exc))
            await self._abandon(rel, group, Status.FAILED, "deployment failed", error)

    async def _with_last_lines(self, release_id: int, error: str) -> str:
        """The failure text followed by the release's last log lines."""
        if self.last_lines is None:
            return error
        await asyncio.sleep(0.1)  # let the dead replica's output pipe drain into the store
        lines = await asyncio.to_thread(self.last_lines, release_id)  # the log store, not Releases
        return f"{error}\n--- last log lines ---\n" + "\n".join(lines) if lines else error

    async def _start_group(self, rel: ReleaseView, plugin_dir: Path | None = None) -> ReplicaGroup:
        sink = self.replica_output(rel) if self.replica_output is not None else None
        return await self._launcher.start_group(rel, plugin_dir, sink)

    def _supersede(self, release_id: int) -> None:
        """A release replaced by a rollout's switch: its group drains."""
        group = self.groups.pop(release_id, None)
        if group is not None:
            self._drain(release_id, group)

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
        await self._serving.abandon(rel, group, to, message, error)

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
        if not self.backend.keeps_replicas_on_stop:  # else the next server adopts them
            await asyncio.gather(*(g.stop(2.0) for g in groups), return_exceptions=True)
        if (self.gate is not None or self._paused) and not self._led:
            # a follower, or a server handing over before its first pass, started nothing;
            # what the backend reaches is the leader's (the successor's)
            return
        await self.backend.shutdown()
