"""The local backend (embedded default): each replica is its own OS process on this machine.

A group keeps its replicas alive: one that exits is replaced with backoff; a group whose
replacements keep failing to start is marked failed and the controller takes it down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import orjson

from plughost.backends.base import CallFailed, GroupHealth, GroupSpec, StartFailed, Unavailable
from plughost.backends.replica import (
    ReplicaCallError,
    ReplicaCallTimeout,
    ReplicaProcess,
    ReplicaSpec,
    ReplicaStartError,
    ReplicaUnavailable,
)
from plughost.config import Settings
from plughost.sandbox.host import Sandbox

log = logging.getLogger("plughost.backend.local")

BASE_ENV = {
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
CRASH_WINDOW_S = 30.0


class CallTimedOut(Unavailable):
    """A call got no reply within the call timeout; its replica was killed."""


class LocalReplicaGroup:
    """The replicas of one release, least-busy routing and self-healing."""

    def __init__(
        self, spec: GroupSpec, settings: Settings, socket_dir: Path, sandbox: Sandbox | None = None
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.socket_dir = socket_dir
        self.sandbox = sandbox
        self.replicas: list[ReplicaProcess] = []
        self._serial = 0
        self._stopping = False
        self._crashes = 0
        self._failed_error: str | None = None
        self._healers: set[asyncio.Task[None]] = set()

    def _replica_spec(self) -> ReplicaSpec:
        self._serial += 1
        env = {**BASE_ENV, "HOME": str(self.spec.plugin_dir), **self.spec.env}
        launch = None
        if self.sandbox is not None:
            launch = self.sandbox.replica_launch(
                self.spec.plugin_dir, self.spec.namespace_id, self.spec.serve_config
            )
        return ReplicaSpec(
            plugin_dir=self.spec.plugin_dir,
            socket_path=self.socket_dir / f"r{self.spec.release_id}-{self._serial}.sock",
            init_kwargs=dict(self.spec.init_kwargs),
            env=env,
            start_timeout_s=self.settings.replica_start_timeout_s,
            call_timeout_s=self.settings.replica_call_timeout_s,
            drain_timeout_s=self.settings.drain_timeout_s,
            sandbox=launch,
            requirements=self.spec.requirements,
            kill_on_call_timeout=True,
        )

    def _release(self, spec: ReplicaSpec) -> None:
        if self.sandbox is not None:
            self.sandbox.release(spec.sandbox)

    async def _launch(self) -> ReplicaProcess:
        spec = self._replica_spec()
        try:
            replica = await ReplicaProcess.start(spec)
        except BaseException:
            self._release(spec)
            raise
        started = time.monotonic()
        replica.on_exit(lambda r: self._release(r.spec))
        replica.on_exit(lambda r: self._on_exit(r, started))
        self.replicas.append(replica)
        return replica

    async def start_all(self) -> None:
        results = await asyncio.gather(
            *(self._launch() for _ in range(self.spec.num_replicas)), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.stop(0)
            first = errors[0]
            if isinstance(first, ReplicaStartError):
                raise StartFailed(str(first)) from first
            raise StartFailed(f"{type(first).__name__}: {first}") from first

    # -- self-healing ---------------------------------------------------------------------------
    def _on_exit(self, replica: ReplicaProcess, started: float) -> None:
        if replica in self.replicas:
            self.replicas.remove(replica)
        if self._stopping:
            return
        if time.monotonic() - started < CRASH_WINDOW_S:
            self._crashes += 1
        log.warning(
            "replica %s of %s exited (code %s); replacing it",
            replica.pid,
            self.spec.deployment_name,
            replica.returncode,
        )
        task = asyncio.create_task(self._replace())
        self._healers.add(task)
        task.add_done_callback(self._healers.discard)

    async def _replace(self) -> None:
        while not self._stopping:
            if self._crashes >= self.settings.max_start_crashes:
                self._failed_error = self._failed_error or (
                    f"replicas crashed {self._crashes} times in a row; giving up"
                )
                return
            await asyncio.sleep(BACKOFF_S[min(self._crashes, len(BACKOFF_S) - 1)])
            if self._stopping:
                return
            try:
                await self._launch()
                return
            except ReplicaStartError as exc:
                self._crashes += 1
                self._failed_error = f"replica failed to restart: {exc}"
                log.warning("restart of a %s replica failed: %s", self.spec.deployment_name, exc)

    # -- calls ------------------------------------------------------------------------------
    def _pick(self, avoid: ReplicaProcess | None = None) -> ReplicaProcess:
        best: ReplicaProcess | None = None
        for replica in self.replicas:
            if replica is avoid or not replica.alive:
                continue
            if best is None or replica.in_flight < best.in_flight:
                best = replica
        if best is None:
            raise Unavailable("no replica is ready (restarting)")
        return best

    async def call(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
        return orjson.loads(await self.call_json(inputs, parameters))

    async def call_json(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> bytes:
        return await self.call_body(orjson.dumps({"inputs": inputs, "parameters": parameters}))

    async def call_body(self, body: bytes) -> bytes:
        """The fast path: a raw `{"inputs", "parameters"}` body in, the result's JSON out.
        Callers pass a body already checked to be one JSON object.

        A call whose replica died under it is retried once on another live replica; with
        none left the caller gets Unavailable (never a hang)."""
        replica = self._pick()
        try:
            return await _call_on(replica, body)
        except CallTimedOut:
            raise  # this request hung its replica: never hand it to another one
        except Unavailable:
            if replica.alive:
                raise  # the plugin may still be running the call
            return await _call_on(self._pick(avoid=replica), body)

    async def health(self) -> bool:
        if not self.replicas:
            return False
        results = await asyncio.gather(*(r.health() for r in list(self.replicas)))
        return all(results)

    def observe(self) -> GroupHealth:
        ready = sum(1 for r in self.replicas if r.alive)
        return GroupHealth(
            desired=self.spec.num_replicas,
            ready=ready,
            failed=self._failed_error is not None and ready == 0 and not self._healers,
            error=self._failed_error,
        )

    async def stop(self, drain_timeout_s: float) -> None:
        self._stopping = True
        for task in list(self._healers):
            task.cancel()
        replicas, self.replicas = list(self.replicas), []
        await asyncio.gather(*(r.stop(drain_timeout_s) for r in replicas), return_exceptions=True)


async def _call_on(replica: ReplicaProcess, body: bytes) -> bytes:
    try:
        return await replica.call_raw(body, checked=True)
    except ReplicaCallError as exc:
        raise CallFailed(exc.type_name, exc.message) from exc
    except ReplicaCallTimeout as exc:
        raise CallTimedOut(str(exc)) from exc
    except ReplicaUnavailable as exc:
        raise Unavailable(str(exc)) from exc


class LocalBackend:
    """Starts replica groups as local processes, each wrapped by ``sandbox`` when given."""

    name = "local"

    def __init__(self, settings: Settings, sandbox: Sandbox | None = None) -> None:
        self.settings = settings
        self.sandbox = sandbox
        # Unix socket paths are limited to ~107 bytes, so they live in a short temp folder.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="plughost-"))
        self.groups: weakref.WeakSet[LocalReplicaGroup] = weakref.WeakSet()

    async def start(self, spec: GroupSpec) -> LocalReplicaGroup:
        group = LocalReplicaGroup(spec, self.settings, self.socket_dir, self.sandbox)
        self.groups.add(group)
        try:
            await group.start_all()
        except BaseException:
            self.groups.discard(group)
            raise
        return group

    async def shutdown(self) -> None:
        groups = list(self.groups)
        await asyncio.gather(*(g.stop(2.0) for g in groups), return_exceptions=True)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.socket_dir)
