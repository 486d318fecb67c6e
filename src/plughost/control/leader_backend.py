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
from typing import Any

from plughost.backends.base import Backend, GroupSpec, ReplicaGroup


class LeaderBackend:
    """A Backend built by ``factory`` on :meth:`build` (or the first start)."""

    def __init__(self, name: str, factory: Callable[[], Backend]) -> None:
        self.name = name
        self._factory = factory
        self.real: Backend | None = None
        self.on_built: list[Callable[[Backend], None]] = []

    def build(self) -> Backend:
        if self.real is None:
            self.real = self._factory()
            for hook in self.on_built:
                hook(self.real)
        return self.real

    async def start(self, spec: GroupSpec) -> ReplicaGroup:
        return await self.build().start(spec)

    async def shutdown(self) -> None:
        if self.real is not None:
            await self.real.shutdown()

    def __getattr__(self, attr: str) -> Any:
        # the backend's own extras (keeps_replicas_on_stop, session, ...) once it exists;
        # before that, absent, so callers fall back to their defaults
        real = self.__dict__.get("real")
        if real is None:
            raise AttributeError(attr)
        return getattr(real, attr)
