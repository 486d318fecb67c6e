"""The small interface between the controller and a replica backend (local processes, Ray)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class StartFailed(Exception):
    """Replicas could not be brought up; the message carries the plugin's own error text."""


class CallFailed(Exception):
    """The plugin raised while serving a call; the replica keeps serving."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message


class Unavailable(Exception):
    """No replica could answer (none ready, died mid-call, or timed out)."""


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


@dataclass(frozen=True)
class GroupHealth:
    desired: int
    ready: int
    failed: bool = False  # replicas crashed repeatedly and will not be restarted
    error: str | None = None


class ReplicaGroup(Protocol):
    """A running set of replicas of one release."""

    spec: GroupSpec

    async def call(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
        """Run one inference on the least busy replica; raises CallFailed or Unavailable."""
        ...

    async def call_json(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> bytes:
        """Like call, but returns the result already encoded as JSON bytes (the HTTP fast path)."""
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
