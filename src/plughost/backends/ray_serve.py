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
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson
from ray.exceptions import RayActorError

from plughost.backends.base import CallFailed, GroupHealth, GroupSpec, StartFailed, Unavailable
from plughost.backends.ray_options import (
    BASE_ENV,
    AppState,
    app_name,
    deployment_options,
    pip_list,
    release_of_app,
)
from plughost.backends.ray_replica import HARDEN_FLAG
from plughost.backends.ray_session import ServeSession
from plughost.config import Settings
from plughost.sandbox.requirements import missing_requirements

log = logging.getLogger("plughost.backend.ray")

POLL_S = 1.0  # background refresh of Serve's status (what observe() reads)
START_POLL_S = 0.25
DELETE_WAIT_S = 10.0
FAIL_AFTER_S = 10.0  # replicas failing to start this long (Serve retries meanwhile) = failed
GC_INTERVAL_S = 30.0
PIN_INTERVAL_S = 300.0
PIN_TTL_S = 1800

RAY_THREADS = 4

T = TypeVar("T")
WantedReleases = Callable[[], set[int]]
Blocking = Callable[..., Awaitable[Any]]


class StatusBoard:
    """Serve's application states; concurrent callers share one fetch."""

    def __init__(self, session: ServeSession, run: Blocking) -> None:
        self.session = session
        self._run = run
        self.apps: dict[str, AppState] = {}
        self.fetched_at = 0.0  # monotonic time the last snapshot's fetch began
        self._lock = asyncio.Lock()

    async def fresh(self) -> dict[str, AppState]:
        """A snapshot fetched after this call began."""
        asked = time.monotonic()
        async with self._lock:
            if self.fetched_at >= asked:
                return self.apps
            began = time.monotonic()
            self.apps = await self._run(self.session.status)
            self.fetched_at = began
            return self.apps


class _ReplicaDied(Exception):
    """The replica a call was routed to died; another one may answer."""


class RayReplicaGroup:
    """One release's Serve application, reached through its deployment handle."""

    def __init__(
        self, spec: GroupSpec, app: str, backend: RayBackend, handle: Any, packages: list[str]
    ) -> None:
        self.spec = spec
        self.app = app
        self.backend = backend
        self.packages = packages
        self._handle = handle
        self._health_handle = handle.options(method_name="health")
        self._timeout = backend.settings.replica_call_timeout_s
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._stopped = False
        self._started = time.monotonic()
        self._bad_since: float | None = None

    # -- calls ------------------------------------------------------------------------------
    async def call(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
        return orjson.loads(await self.call_json(inputs, parameters))

    async def call_json(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> bytes:
        return await self.call_body(orjson.dumps({"inputs": inputs, "parameters": parameters}))

    async def call_body(self, body: bytes) -> bytes:
        """A raw ``{"inputs", "parameters"}`` body in, the result's JSON out.

        A call whose replica died under it is sent once more (Serve routes it to a live
        replica); a second death, a timeout or no replica at all is Unavailable."""
        if self._stopping:
            raise Unavailable(f"{self.spec.deployment_name} is stopping")
        self._in_flight += 1
        self._idle.clear()
        try:
            try:
                reply = await self._request(self._handle, body)
            except _ReplicaDied as exc:
                log.warning("a replica of %s died during a call; retrying: %s", self.app, exc)
                try:
                    reply = await self._request(self._handle, body)
                except _ReplicaDied as again:
                    raise Unavailable(f"replica died during the call: {again}") from again
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        if reply[0] is True:
            return bytes(reply[1])
        raise CallFailed(str(reply[1]), str(reply[2]))

    async def _request(self, handle: Any, *args: Any) -> Any:
        response = handle.remote(*args)
        try:
            async with asyncio.timeout(self._timeout):
                return await response
        except TimeoutError:
            response.cancel()
            raise Unavailable(f"no reply within {self._timeout:g} s") from None
        except RayActorError as exc:
            raise _ReplicaDied(
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            ) from exc
        except asyncio.CancelledError:
            response.cancel()
            raise
        except Exception as exc:  # Serve's own refusals: no replica, back-pressure, ...
            raise Unavailable(f"{type(exc).__name__}: {exc}") from exc

    async def health(self) -> bool:
        """Serve reports the application RUNNING and a replica's health call passes."""
        state = (await self.backend.board.fresh()).get(self.app)
        if state is None or state.status != "RUNNING":
            return False
        try:
            return bool(await self._request(self._health_handle))
        except (Unavailable, _ReplicaDied):
            return False

    # -- state ------------------------------------------------------------------------------
    @property
    def desired(self) -> int:
        sc = self.spec.serve_config
        if sc.get("num_replicas") is None and (
            sc.get("max_replicas") is not None or sc.get("target_ongoing_requests") is not None
        ):
            return max(1, int(sc.get("min_replicas") or 1))
        return self.spec.num_replicas

    def observe(self) -> GroupHealth:
        """From the last status snapshot: failed once replicas have kept failing to start
        (or the application vanished) for FAIL_AFTER_S."""
        board = self.backend.board
        if board.fetched_at <= self._started:
            return GroupHealth(desired=self.desired, ready=self.desired)
        state = board.apps.get(self.app)
        if state is None:
            problem: str | None = f"the Serve application {self.app} is gone"
        elif state.startup_failing:
            problem = state.error or "replicas keep failing to start"
        else:
            problem = None
        ready = state.running if state is not None else 0
        if problem is None:
            self._bad_since = None
            return GroupHealth(desired=self.desired, ready=ready)
        now = time.monotonic()
        self._bad_since = self._bad_since or now
        failed = now - self._bad_since >= FAIL_AFTER_S
        return GroupHealth(desired=self.desired, ready=ready, failed=failed, error=problem)

    async def stop(self, drain_timeout_s: float) -> None:
        """Let in-flight calls finish (bounded), then delete the application."""
        if self._stopped:
            return
        self._stopping = True
        if self._in_flight:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, drain_timeout_s)):
                    await self._idle.wait()
        self._stopped = True
        await self.backend.remove(self.app)


class RayBackend:
    """Runs replica groups as Ray Serve applications.

    ``owner`` tags this server's applications; ``wanted`` returns the ids of releases that
    may have an application (pending, in progress or deployed) and is read, in a worker
    thread, by the orphan sweep.
    """

    name = "ray"

    def __init__(self, settings: Settings, owner: str, wanted: WantedReleases) -> None:
        self.settings = settings
        self.owner = owner
        self.wanted = wanted
        self.session = ServeSession(settings)
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

    async def _connected(self) -> None:
        if self.session.connected:
            return
        async with self._connect_lock:
            if self.session.connected:
                return
            began = time.monotonic()
            try:
                await self._blocking(self.session.connect)
            except Exception as exc:
                raise StartFailed(
                    f"cannot reach Ray ({self.session.address}): {type(exc).__name__}: {exc}"
                ) from exc
            log.info(
                "Ray Serve ready at %s in %.1f s", self.session.address, time.monotonic() - began
            )
            self._watcher = asyncio.create_task(self._watch(), name="plughost-ray-watch")

    async def _watch(self) -> None:
        """Refresh the status snapshot; sweep orphans and re-pin packages now and then."""
        last_gc = time.monotonic() - GC_INTERVAL_S  # sweep at once: a restart is when orphans show
        last_pin = time.monotonic()
        while True:
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
            await asyncio.sleep(POLL_S)

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
        return group

    async def _start(self, spec: GroupSpec, name: str) -> RayReplicaGroup:
        options = deployment_options(spec, self.settings)
        packages, runtime_env = await self._blocking(self._runtime_env, spec)
        options["ray_actor_options"]["runtime_env"] = runtime_env
        state = (await self.board.fresh()).get(name)
        if state is not None and state.status in ("RUNNING", "DEPLOYING"):
            log.info("adopting the running Serve application %s", name)
        else:
            if state is not None:
                await self._delete_and_wait(name)
            init_args = (dict(spec.init_kwargs), list(spec.requirements))
            await self._blocking(self.session.deploy, name, options, init_args)
        await self._wait_running(name)
        handle = await self._blocking(self.session.handle, name)
        return RayReplicaGroup(spec, name, self, handle, packages)

    def _runtime_env(self, spec: GroupSpec) -> tuple[list[str], dict[str, Any]]:
        """Upload the plugin folder and plughost; the replicas' runtime_env (blocking)."""
        tag = f"{self.owner}_r{spec.release_id}"
        working_dir = self.session.upload(spec.plugin_dir, tag=tag)
        package = self.session.plughost_package()
        env: dict[str, Any] = {
            "working_dir": working_dir,
            "py_modules": [package],
            "env_vars": {**BASE_ENV, **spec.env, HARDEN_FLAG: "1"},
        }
        missing = (
            missing_requirements(spec.requirements, spec.plugin_dir)
            if self.settings.ray_pip == "missing"
            else []
        )
        pip = pip_list(spec.requirements, missing, self.settings)
        if pip:
            env["pip"] = pip
        return [working_dir, package], env

    async def _wait_running(self, name: str) -> None:
        timeout = self.settings.replica_start_timeout_s
        deadline = time.monotonic() + timeout
        while True:
            state = (await self.board.fresh()).get(name)
            if state is not None:
                if state.status == "RUNNING":
                    return
                if state.status == "DEPLOY_FAILED" or state.startup_failing:
                    raise StartFailed(state.error or f"Serve could not start {name}")
            if time.monotonic() >= deadline:
                detail = f": {state.error}" if state is not None and state.error else ""
                raise StartFailed(f"replicas were not ready within {timeout:g} s{detail}")
            await asyncio.sleep(START_POLL_S)

    async def remove(self, name: str) -> None:
        """Delete an application and forget it."""
        try:
            await self._delete_and_wait(name)
        finally:
            self.groups.pop(name, None)
            self._claimed.discard(name)

    async def _delete_and_wait(self, name: str) -> None:
        try:
            await self._blocking(self.session.delete, name)
        except Exception:
            log.warning("deleting the Serve application %s failed", name, exc_info=True)
            return
        deadline = time.monotonic() + DELETE_WAIT_S
        while time.monotonic() < deadline:
            if name not in await self.board.fresh():
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
        for task in [*self._tasks, *([self._watcher] if self._watcher else [])]:
            task.cancel()
        for task in [*self._tasks, *([self._watcher] if self._watcher else [])]:
            with contextlib.suppress(BaseException):
                await task
        if self.session.connected and not self.session.owns_cluster:
            groups = list(self.groups.values())
            await asyncio.gather(*(g.stop(0) for g in groups), return_exceptions=True)
        try:
            async with asyncio.timeout(30):
                await self._blocking(self.session.close)
        except Exception:
            log.warning("disconnecting from Ray failed", exc_info=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
