"""The backend of a server that may not lead: what it offers before and after it is built,
forwarded member by member as the Backend interface declares them, nothing else."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from plughost.backends.base import Backend, GroupSpec, ReplicaGroup
from plughost.cluster.leader_backend import LeaderBackend

SPEC = GroupSpec("custom_plugin_x", 1, Path("/nonexistent"))


class Capable(Backend):
    """A backend with every capability, and one undeclared extra."""

    name = "capable"

    def __init__(self) -> None:
        self.started: list[GroupSpec] = []
        self.shut_down = False
        self.session: Any = object()
        self.extra = "not declared"

    @property
    def keeps_replicas_on_stop(self) -> bool:
        return True

    def sandbox_report(self) -> dict[str, Any] | None:
        return {"node": {"mode": "strict"}}

    async def ray_session(self) -> Any:
        return self.session

    async def start(self, spec: GroupSpec) -> ReplicaGroup:
        self.started.append(spec)
        return object()  # type: ignore[return-value]

    async def shutdown(self) -> None:
        self.shut_down = True


def test_before_it_is_built_it_offers_the_defaults_and_builds_nothing() -> None:
    built: list[Capable] = []
    leader = LeaderBackend("capable", lambda: built.append(Capable()) or built[-1])
    assert leader.keeps_replicas_on_stop is False
    assert leader.sandbox_report() is None
    assert asyncio.run(leader.ray_session()) is None
    asyncio.run(leader.shutdown())
    assert built == [] and leader.real is None


def test_once_built_it_forwards_every_declared_member() -> None:
    real = Capable()
    leader = LeaderBackend("capable", lambda: real)
    assert leader.build() is real and leader.build() is real
    assert leader.keeps_replicas_on_stop is True
    assert leader.sandbox_report() == {"node": {"mode": "strict"}}
    assert asyncio.run(leader.ray_session()) is real.session
    asyncio.run(leader.start(SPEC))
    asyncio.run(leader.shutdown())
    assert real.started == [SPEC] and real.shut_down


def test_a_start_builds_it_and_undeclared_members_are_not_forwarded() -> None:
    leader = LeaderBackend("capable", Capable)
    asyncio.run(leader.start(SPEC))
    assert isinstance(leader.real, Capable) and leader.real.started == [SPEC]
    with pytest.raises(AttributeError):
        leader.extra  # type: ignore[attr-defined]  # noqa: B018
