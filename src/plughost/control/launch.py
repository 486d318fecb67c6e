"""Starting a release's replicas, the controller's one blocking step: unpack the release,
build or find its plugin environment, start its replica group, and prove the group with the
health call and the manifest's ``example_input`` before anything routes to it.

The controller decides when (a rollout, a recovery after a restart); :class:`Launcher` only
does it, and stops what it started when a step fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from plughost.backends.base import Backend, CallFailed, GroupSpec, ReplicaGroup, StartFailed
from plughost.control.store import ReleaseStore
from plughost.control.workspace import Workspace
from plughost.domain.ids import deployment_name_for
from plughost.domain.release import ReleaseView
from plughost.domain.states import Status
from plughost.envs import PluginEnvironments
from plughost.envs.stage import dependencies_of
from plughost.logs.capture import REPLICA_OUTPUT, Sink

T = TypeVar("T")

# longest failure text kept on a release row
ERROR_TEXT_CHARS = 4000


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


def error_text(exc: BaseException) -> str:
    """A failure as a release row keeps it: the message (else the type), capped."""
    text = str(exc) or type(exc).__name__
    return text[:ERROR_TEXT_CHARS]


async def together(move: Awaitable[bool], step: Awaitable[T]) -> tuple[bool, T | None]:
    """A status move and a step (file work that undoes nothing) run concurrently, both
    awaited: (moved, the step's result; None when it failed). The step's failure is raised
    only when the move happened: else the release moved on, and the failure is moot."""
    moved, outcome = await asyncio.gather(move, step, return_exceptions=True)
    if isinstance(moved, BaseException):
        raise moved
    if isinstance(outcome, BaseException):
        if moved:
            raise outcome
        return False, None
    return bool(moved), outcome


class Launcher:
    """Prepares and starts release groups on ``backend``; the controller owns what it returns."""

    def __init__(
        self,
        backend: Backend,
        workspace: Workspace,
        envs: PluginEnvironments,
        plugin_info: PluginInfoLoader,
        store: ReleaseStore,
    ) -> None:
        self.backend = backend
        self.workspace = workspace
        self.envs = envs
        self.plugin_info = plugin_info
        self.store = store

    def prepare(self, rel: ReleaseView) -> Path:
        """Unpack the release into its folder (blocking: the caller runs it in a thread).
        StartFailed when the plugin is gone."""
        info = self.plugin_info(rel.plugin_pk)
        if info is None:
            raise StartFailed("the plugin was deleted")
        return self.workspace.prepare(rel.id, info.storage_key)

    async def build_environment(self, rel: ReleaseView, plugin_dir: Path) -> None:
        """Pending phase: build or find the plugin environment (plughost.envs), saying which
        in the release's status message."""
        info = await asyncio.to_thread(self.plugin_info, rel.plugin_pk)
        if info is None:
            raise StartFailed("the plugin was deleted")

        async def note(message: str) -> None:
            await self.store.note(rel.id, Status.PENDING, message)

        await self.envs.prepare(rel.id, dependencies_of(info.manifest), plugin_dir, note)

    async def start_group(
        self, rel: ReleaseView, plugin_dir: Path | None = None, sink: Sink | None = None
    ) -> ReplicaGroup:
        """Start, health-check and smoke-test the release's replicas (unpacking it if needed);
        ``sink`` receives their output lines. On any failure the group is stopped and the
        error raised (StartFailed for our own checks)."""
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
        token = REPLICA_OUTPUT.set(sink)  # the replicas' output tasks inherit it (logs.capture)
        try:
            group = await self.backend.start(spec)
        finally:
            REPLICA_OUTPUT.reset(token)
        try:
            await self._prove(group, info.manifest.get("example_input"))
        except BaseException:
            await group.stop(0)
            raise
        return group

    @staticmethod
    async def _prove(group: ReplicaGroup, example: object) -> None:
        """The health call, then the manifest's example as a smoke call when it has one."""
        if not await group.health():
            raise StartFailed("the new replicas did not pass the health call")
        if isinstance(example, dict):
            try:
                await group.call_body(orjson.dumps({"inputs": example, "parameters": {}}))
            except CallFailed as exc:
                raise StartFailed(f"smoke call with example_input failed: {exc}") from exc
