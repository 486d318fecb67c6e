"""The interface between the controller and a replica backend (local processes, Ray): all
that a backend and its replica groups offer is declared here."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from plughost.backends.stream import CallStream
from plughost.domain.serve_config import request_timeout_of
from plughost.errors import BackendError, CallFailed, CallTimedOut, StartFailed, Unavailable

if TYPE_CHECKING:  # the Ray session module is loaded only with the Ray backend
    from plughost.backends.ray.session import ServeSession

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
    "plain_snapshot",
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


class GroupSnapshot(NamedTuple):
    """What a group's readers (status, metrics, peers, dashboard) may know of it, at one
    moment: replicas ready, starting and wanted, restarts so far, a note on its recent
    history (a memory cap, a scale-to-zero state) and the last replaced replica's end.

    A named tuple, not a frozen dataclass: every status poll takes one, and a frozen
    dataclass of eight fields costs several times as much to build."""

    ready: int
    starting: int
    target: int
    restarts: int = 0
    note: str | None = None
    # (when, as time.time(); how it ended) of the last replica replaced, if any
    last_exit: tuple[float, str] | None = None
    at_zero: bool = False  # scaled to zero: the next call starts a replica
    cold_start_s: float | None = None  # the expected start from zero, once measured


class ReplicaGroup(ABC):
    """A running set of replicas of one release: everything its callers (the controller,
    routing, status, metrics, the takeover) may use of it."""

    spec: GroupSpec

    @abstractmethod
    async def call_body(self, body: bytes, deadline_s: float | None = None) -> bytes | CallStream:
        """Run one inference on the least busy replica: ``body`` is one JSON object
        ``{"inputs": ..., "parameters": ...}`` (checked by the caller); returns the result's
        JSON bytes as the replica encoded them, or a CallStream when the plugin streams.
        ``deadline_s``: seconds from now until the call's deadline, which the replica
        enforces (DeadlineExceeded). Raises CallFailed or Unavailable."""

    def request_timeout(self, default: float) -> float | None:
        """The release's call deadline in seconds (serve_config.request_timeout_s, else
        ``default``); None when another server decides it (a forwarded call)."""
        return request_timeout_of(self.spec.serve_config, default)

    @abstractmethod
    async def health(self) -> bool:
        """True when every replica answers a health call."""

    @abstractmethod
    def observe(self) -> GroupHealth:
        """What the controller decides on: replicas wanted and ready, and whether the group
        failed for good."""

    @abstractmethod
    def snapshot(self) -> GroupSnapshot:
        """What readers (status, metrics, peers, dashboard) show of the group now; cheap,
        never waits."""

    @abstractmethod
    async def stop(self, drain_timeout_s: float) -> None:
        """Let in-flight calls finish (bounded), then stop every replica."""

    def stop_following_output(self) -> int:
        """Stop reading the replicas' output files where they are (a takeover: the
        successor reads on from there); how many were followed. A group whose replicas'
        output this server does not read from files follows none."""
        return 0


def plain_snapshot(health: GroupHealth) -> GroupSnapshot:
    """The snapshot of a group that keeps no history of its own: its health's figures, the
    replicas not ready yet counted as starting."""
    return GroupSnapshot(
        ready=health.ready, starting=max(0, health.desired - health.ready), target=health.desired
    )


class Backend(ABC):
    """Starts replica groups. The capabilities below have defaults for a backend without
    them; a backend that has one overrides it."""

    name: str

    @abstractmethod
    async def start(self, spec: GroupSpec) -> ReplicaGroup:
        """Start all replicas and wait until each is ready; raise StartFailed otherwise."""

    @abstractmethod
    async def shutdown(self) -> None:
        """Stop everything this backend started (server shutdown)."""

    @property
    def keeps_replicas_on_stop(self) -> bool:
        """Whether a deliberate stop leaves the replicas running for the next server (then
        the controller does not stop its groups on shutdown)."""
        return False

    def build(self) -> Backend:
        """The backend that runs the replicas, ready: a backend built lazily builds it now
        (this server was elected); any other is that backend already."""
        return self

    def sandbox_report(self) -> dict[str, Any] | None:
        """The sandbox layers per node running this server's replicas (``/healthz``), for a
        backend whose replicas run on other machines; None when they run on this one."""
        return None

    async def ray_session(self) -> ServeSession | None:
        """The backend's connected Ray session, which batch jobs share (one ``ray.init`` per
        process); None for a backend not on Ray. Raises StartFailed when Ray is
        unreachable."""
        return None
