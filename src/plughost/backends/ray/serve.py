"""The Ray Serve backend (``PLUGHOST_BACKEND=ray``): each release is a Serve application.

A release runs as application ``custom_plugin_{plugin_id}__r{release_id}_{owner}`` holding
one deployment named after the deployment (``custom_plugin_{plugin_id}``), so a new release
starts beside the live one and the controller's blue-green switch works unchanged. The
plugin folder and the plughost package reach the replicas as runtime_env packages uploaded
to the cluster (``working_dir`` and ``py_modules``), never as a path on the server's disk.

Calls go through Serve deployment handles; plughost's router, auth and namespaces stay in
front. Serve replaces dead replicas itself; a group is reported failed when its replicas keep
failing to start. After a restart, :meth:`RayBackend.start` adopts a running application of
the same release instead of deploying it again, and a periodic sweep deletes this server's
applications whose release is no longer live (orphans of a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from plughost.backends.base import (
    BASE_ENV,
    Backend,
    GroupSpec,
    StartFailed,
)
from plughost.backends.ray.direct import DirectSet
from plughost.backends.ray.directory import NAMESPACE, directory_name
from plughost.backends.ray.group import RayReplicaGroup, StatusBoard
from plughost.backends.ray.listing import ReplicaListing
from plughost.backends.ray.node import WorkerConfig, sandbox_fields, warm_probe
from plughost.backends.ray.options import (
    app_name,
    deployment_options,
    pip_list,
    release_of_app,
)
from plughost.backends.ray.readiness import START_POLL_S, log_start, wait_running
from plughost.backends.ray.replica import HARDEN_FLAG
from plughost.backends.ray.session import RAY_CLIENT_REFUSED, ServeSession
from plughost.config import Settings
from plughost.domain.container import ContainerCalls, ContainerScope
from plughost.logs.capture import REPLICA_OUTPUT
from plughost.sandbox.host import config_from_settings

log = logging.getLogger("plughost.backend.ray")

POLL_S = 1.0  # background refresh of Serve's status (what observe() reads)
GONE = "NOT_STARTED"  # Serve's status of an application it does not have (deleted)
DELETE_WAIT_S = 10.0
GC_INTERVAL_S = 30.0
PIN_INTERVAL_S = 300.0
PIN_TTL_S = 1800

RAY_THREADS = 4
STEADY_POLL_S = 5.0  # the same while every group's workers are connected (less idle CPU)

T = TypeVar("T")
WantedReleases = Callable[[], set[int]]


class RayBackend(Backend):
    """Runs replica groups as Ray Serve applications.

    ``owner`` tags this server's applications; ``wanted`` returns the ids of releases that
    may have an application (pending, in progress or deployed) and is read, in a worker
    thread, by the orphan sweep.
    """

    name = "ray"

    def __init__(
        self,
        settings: Settings,
        owner: str,
        wanted: WantedReleases,
        container: ContainerCalls | None = None,
    ) -> None:
        address = settings.ray_address.strip()
        if address.startswith("ray://"):
            raise ValueError(RAY_CLIENT_REFUSED.format(address=address))
        self.settings = settings
        self.container = container  # answers the workers' container calls (direct channels)
        self.owner = owner
        self.wanted = wanted
        self.session = ServeSession(settings)
        self.sandbox = sandbox_fields(config_from_settings(settings))
        self.replicas = ReplicaListing(self.session, settings.replica_call_timeout_s)
        self._listener: asyncio.Task[None] | None = None
        # Ray calls get threads of their own: a cluster that stops answering must not take
        # the threads the controller's database calls run on.
        self._pool = ThreadPoolExecutor(max_workers=RAY_THREADS, thread_name_prefix="plughost-ray")
        self.board = StatusBoard(self.session, self._blocking)
        self.groups: dict[str, RayReplicaGroup] = {}
        self._claimed: set[str] = set()
        self._connect_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no server loop: connect on the first start
        self._spawn(loop.create_task(self._boot(), name="plughost-ray-connect"))

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _spawn(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- connection -------------------------------------------------------------------------
    async def _boot(self) -> None:
        try:
            await self._connected()
        except StartFailed as exc:
            log.warning("%s; retrying on the first deployment", exc)

    async def ray_session(self) -> ServeSession:
        await self._connected()
        return self.session

    async def _connected(self) -> None:
        if self.session.connected:
            return
        async with self._connect_lock:
            if self.session.connected:
                return
            began = time.monotonic()
            # meanwhile (Ray's own start takes seconds): the sandbox probe of this node
            self._spawn(asyncio.create_task(self._warm_node(), name="plughost-ray-warm"))
            try:
                await self._blocking(self.session.connect)
            except Exception as exc:
                raise StartFailed(
                    f"cannot reach Ray ({self.session.address}): {type(exc).__name__}: {exc}"
                ) from exc
            self.replicas.directory = await self._blocking(self.session.directory, self.owner)
            log.info(
                "Ray Serve ready at %s in %.1f s", self.session.address, time.monotonic() - began
            )
            self._watcher = asyncio.create_task(self._watch(), name="plughost-ray-watch")
            self._listener = asyncio.create_task(
                self.replicas.listen(self._pause_s), name="plughost-ray-directory"
            )

    async def _warm_node(self) -> None:
        """Run the sandbox probe on this node ahead of the first replica (its start would
        otherwise include it: up to three interpreter starts, 0.1-0.6 s on this machine),
        while Ray starts. Once per connection attempt; a fresh cached result is reused."""
        try:
            await self._blocking(warm_probe, self.sandbox)
        except Exception:  # only a head start: the replica probes itself
            log.info("probing the sandbox ahead of the first replica failed", exc_info=True)

    def _settling(self) -> bool:
        """Whether a group is short of connected workers (then Serve's status is read often)."""
        return any(g.direct.ready < g.desired for g in self.groups.values())

    # -- the replica directory --------------------------------------------------------------
    def direct_set(self, app: str, spec: GroupSpec | None = None) -> DirectSet:
        """The direct channels of ``app`` (created on first use, fed by the directory); with
        ``spec`` they answer its workers' container calls for the release's namespace."""
        handler = None
        if spec is not None and self.container is not None:
            handler = partial(self.container.call, ContainerScope(spec.namespace_id))
        return self.replicas.direct_set(app, handler)

    def sandbox_report(self) -> dict[str, Any]:
        """The sandbox layers of each node running this server's replicas (``/healthz``)."""
        return self.replicas.sandbox_report()

    def _pause_s(self) -> float:
        """How long a background loop waits: short while a group is short of workers."""
        return POLL_S if self._settling() else STEADY_POLL_S

    async def _watch(self) -> None:
        """Refresh the status snapshot; sweep orphans and re-pin packages now and then."""
        last_gc = time.monotonic() - GC_INTERVAL_S  # sweep at once: a restart is when orphans show
        last_pin = time.monotonic()
        while True:
            try:  # on its own: Serve's status may fail while a node is dying
                await self.replicas.forget_dead_nodes(self._blocking)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("reading Ray's node table failed", exc_info=True)
            try:
                await self.board.fresh()
                now = time.monotonic()
                if now - last_gc >= GC_INTERVAL_S:
                    last_gc = now
                    await self._collect_orphans()
                if now - last_pin >= PIN_INTERVAL_S:
                    last_pin = now
                    await self._pin_live()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("watching Serve failed", exc_info=True)
            await asyncio.sleep(self._pause_s())

    # -- groups ---------------------------------------------------------------------------
    async def start(self, spec: GroupSpec) -> RayReplicaGroup:
        """Deploy (or adopt, after a restart) the release's application; wait until Serve
        reports it RUNNING. Raises StartFailed with the replica's own error text."""
        await self._connected()
        name = app_name(spec.deployment_name, spec.release_id, self.owner)
        if name in self._claimed:
            raise StartFailed(f"release {spec.release_id} is already running on Serve")
        self._claimed.add(name)
        try:
            group = await self._start(spec, name)
        except BaseException:
            await asyncio.shield(self.remove(name))
            raise
        self.groups[name] = group
        self._report_layers(group)
        return group

    @staticmethod
    def _report_layers(group: RayReplicaGroup) -> None:
        """Missing sandbox layers of the nodes the replicas run on: in the server log and the
        release's own log (the sink the controller set for this start)."""
        sink = REPLICA_OUTPUT.get()
        for info in group.direct.infos.values():
            missing = info.get("missing_layers") or []
            if not missing:
                continue
            line = (
                f"sandbox ({info.get('sandbox_mode')}) on Ray node {info.get('host')}: "
                f"layers missing: {', '.join(missing)}"
            )
            log.error("%s: %s", group.app, line)
            if sink is not None:
                sink(0, line)

    async def _start(self, spec: GroupSpec, name: str) -> RayReplicaGroup:
        began = time.monotonic()
        options = deployment_options(spec, self.settings)
        packages, runtime_env = await self._blocking(self._runtime_env, spec)
        uploaded = time.monotonic()
        if runtime_env:
            options["ray_actor_options"]["runtime_env"] = runtime_env
        state = (await self.board.fresh()).get(name)
        if state is not None and state.status in ("RUNNING", "DEPLOYING"):
            log.info("adopting the running Serve application %s", name)
        else:
            if state is not None:
                await self._delete_and_wait(name)
            init_args = (
                dict(spec.init_kwargs),
                list(spec.requirements),
                self._worker_config(spec, packages),
                name,
                (directory_name(self.owner), NAMESPACE),
            )
            await self._blocking(self.session.deploy, name, options, init_args)
        deployed, deployed_at = time.monotonic(), time.time()
        direct = self.direct_set(name, spec)
        workers_at = await wait_running(
            self, name, direct, deployment_options(spec, self.settings)
        )
        running = time.monotonic()
        handle = await self._blocking(self.session.handle, name)
        log_start(name, direct.infos.values(), began, uploaded, deployed, deployed_at,
                  workers_at, running)
        return RayReplicaGroup(spec, name, self, handle, packages)

    def _worker_config(self, spec: GroupSpec, packages: list[str]) -> dict[str, Any]:
        """What each replica needs to start the plugin's sandboxed worker on its node."""
        config = WorkerConfig(
            plugin_package=packages[0],
            env_package=packages[1] if spec.env_path is not None else "",
            sandbox=self.sandbox,
            namespace_id=spec.namespace_id,
            serve_config=dict(spec.serve_config),
            env=dict(spec.env),
            start_timeout_s=self.settings.replica_start_timeout_s,
            call_timeout_s=self.settings.replica_call_timeout_s,
            drain_timeout_s=self.settings.drain_timeout_s,
            release_id=spec.release_id,
        )
        return dict(config.__dict__)

    def _runtime_env(self, spec: GroupSpec) -> tuple[list[str], dict[str, Any]]:
        """Upload the plugin folder (and its environment) as packages the replicas fetch
        themselves (:func:`~plughost.backends.ray.node.fetch_package`); the replicas'
        runtime_env, empty unless pip packages are asked for (blocking)."""
        tag = f"{self.owner}_r{spec.release_id}"
        packages = [self.session.upload(spec.plugin_dir, tag=tag)]
        if spec.env_path is not None:
            # the plugin environment built on the server (plughost.envs), content-addressed:
            # releases with the same set share one package on the cluster
            packages.append(self.session.upload(spec.env_path))
        env: dict[str, Any] = {}
        pip = pip_list(spec.requirements, [], self.settings)
        if pip:
            env = {"pip": pip, "env_vars": {**BASE_ENV, **spec.env, HARDEN_FLAG: "1"}}
        return packages, env

    async def remove(self, name: str) -> None:
        """Delete an application and forget it."""
        try:
            await self._delete_and_wait(name)
        finally:
            self.groups.pop(name, None)
            self._claimed.discard(name)
            self.replicas.drop(name)

    async def _delete_and_wait(self, name: str) -> None:
        try:
            await self._blocking(self.session.delete, name)
        except Exception:
            log.warning("deleting the Serve application %s failed", name, exc_info=True)
            return
        deadline = time.monotonic() + DELETE_WAIT_S
        while time.monotonic() < deadline:
            # the application's own status (Serve's full one costs ~15 ms of CPU a read,
            # which a redeploy's new replica, starting meanwhile, would compete with)
            if await self._blocking(self.session.app_status, name) == GONE:
                return
            await asyncio.sleep(START_POLL_S)
        log.warning("the Serve application %s is still being deleted", name)

    # -- upkeep ---------------------------------------------------------------------------
    async def _collect_orphans(self) -> None:
        """Delete this server's applications whose release is not live (left by a crash).

        Applications are listed before the live releases are read: an application created
        after the listing is not considered, so a release starting meanwhile is never hit."""
        apps = await self.board.fresh()
        ours = {n: rid for n in apps if (rid := release_of_app(n, self.owner)) is not None}
        if not ours:
            return
        wanted = await asyncio.to_thread(self.wanted)
        for name, release_id in ours.items():
            if release_id in wanted or name in self._claimed or apps[name].status == "DELETING":
                continue
            log.warning("deleting orphaned Serve application %s (release not live)", name)
            try:
                await self._blocking(self.session.delete, name)
            except Exception:
                log.warning("deleting %s failed", name, exc_info=True)

    async def _pin_live(self) -> None:
        """Keep live groups' packages in the cluster so Serve can always restart a replica."""
        uris = sorted({uri for group in self.groups.values() for uri in group.packages})
        if uris:
            await self._blocking(self.session.pin, uris, PIN_TTL_S)

    async def shutdown(self) -> None:
        """Delete what is left of this server's applications and disconnect (a local Ray
        started by the server stops with it)."""
        loops = [t for t in (self._watcher, self._listener) if t is not None]
        for task in [*self._tasks, *loops]:
            task.cancel()
        for task in [*self._tasks, *loops]:
            with contextlib.suppress(BaseException):
                await task
        self.replicas.close()
        if self.session.connected and not self.session.owns_cluster:
            groups = list(self.groups.values())
            await asyncio.gather(*(g.stop(0) for g in groups), return_exceptions=True)
            if self.replicas.directory is not None:
                with contextlib.suppress(Exception):
                    await self._blocking(self.session.kill, self.replicas.directory)
        try:
            async with asyncio.timeout(30):
                await self._blocking(self.session.close)
        except Exception:
            log.warning("disconnecting from Ray failed", exc_info=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
