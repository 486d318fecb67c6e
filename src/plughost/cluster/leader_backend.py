"""The replica backend of a server that may not lead: built only once it does.

A follower starts no replica and must not touch the leader's: the local backend's adoption
would sweep, after its grace period, replicas of a dead server that the leader adopted
meanwhile; the Ray backend's shutdown deletes the directory actor every server of one
database shares. So on PostgreSQL the backend is built when this server is elected (right
at start for the first server, at takeover for a follower), just before its first tick; the
new leader's local backend then finds the dead leader's replicas in the registry and the
restore adopts those that still run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from plughost.backends.base import Backend, GroupSpec, ReplicaGroup

if TYPE_CHECKING:
    from plughost.backends.ray.session import ServeSession


class LeaderBackend(Backend):
    """A Backend built by ``factory`` on :meth:`build` (or the first start). It offers what
    :class:`~plughost.backends.base.Backend` declares, from the real backend once built;
    before that, each capability's default (a follower has none)."""

    def __init__(self, name: str, factory: Callable[[], Backend]) -> None:
        self.name = name
        self._factory = factory
        self.real: Backend | None = None

    def build(self) -> Backend:
        if self.real is None:
            self.real = self._factory()
        return self.real

    async def start(self, spec: GroupSpec) -> ReplicaGroup:
        return await self.build().start(spec)

    async def shutdown(self) -> None:
        if self.real is not None:
            await self.real.shutdown()

    @property
    def keeps_replicas_on_stop(self) -> bool:
        return self.real is not None and self.real.keeps_replicas_on_stop

    def sandbox_report(self) -> dict[str, Any] | None:
        return self.real.sandbox_report() if self.real is not None else None

    async def ray_session(self) -> ServeSession | None:
        return await self.real.ray_session() if self.real is not None else None
