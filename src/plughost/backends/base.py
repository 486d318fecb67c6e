"""The small interface between the controller and a replica backend (local processes, Ray)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from plughost.errors import BackendError, CallFailed, CallTimedOut, StartFailed, Unavailable

__all__ = [
    "BASE_ENV",
    "Backend",
    "BackendError",
    "CallFailed",
    "CallTimedOut",
    "GroupHealth",
    "GroupSnapshot",
    "GroupSpec",
    "ReplicaGroup",
    "StartFailed",
    "Unavailable",
]

# The environment every replica starts from, on any backend (HOME is set per backend).
BASE_ENV = {
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


@dataclass(frozen=True)
class GroupSpec:
    """What to run: one deployment's replicas."""

    deployment_name: str
    release_id: int
    plugin_dir: Path
    num_replicas: int = 1
    init_kwargs: dict[str, Any] = field(default_factory=dict)
    serve_config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    namespace_id: str | None = None  # decides the sandbox's egress (SECURITY.md)
    requirements: tuple[str, ...] = ()  # the manifest's dependencies, checked at start
    env_path: Path | None = None  # the plugin environment's import folder (plughost.envs)


@dataclass(frozen=True)
class GroupHealth:
    desired: int
    ready: int
    failed: bool = False  # replicas crashed repeatedly and will not be restarted
    error: str | None = None


@dataclass(frozen=True)
class GroupSnapshot:
    """What a group's readers (status, metrics, peers, dashboard) may know of it, at one
    moment: replicas ready, starting and wanted, restarts so far, a note on its recent
    history (a memory cap, a scale-to-zero state) and the last replaced replica's end."""

    ready: int
    starting: int
    target: int
    restarts: int = 0
    note: str | None = None
    # (when, as time.time(); how it ended) of the last replica replaced, if any
    last_exit: tuple[float, str] | None = None
    at_zero: bool = False  # scaled to zero: the next call starts a replica
    cold_start_s: float | None = None  # the expected start from zero, once measured


class ReplicaGroup(Protocol):
    """A running set of replicas of one release."""

    spec: GroupSpec

    async def call_body(self, body: bytes) -> bytes:
        """Run one inference on the least busy replica: ``body`` is one JSON object
        ``{"inputs": ..., "parameters": ...}`` (checked by the caller); returns the result's
        JSON bytes as the replica encoded them. Raises CallFailed or Unavailable."""
        ...

    async def health(self) -> bool:
        """True when every replica answers a health call."""
        ...

    def observe(self) -> GroupHealth: ...

    async def stop(self, drain_timeout_s: float) -> None:
        """Let in-flight calls finish (bounded), then stop every replica."""
        ...


class Backend(Protocol):
    name: str

    async def start(self, spec: GroupSpec) -> ReplicaGroup:
        """Start all replicas and wait until each is ready; raise StartFailed otherwise."""
        ...

    async def shutdown(self) -> None:
        """Stop everything this backend started (server shutdown)."""
        ...
