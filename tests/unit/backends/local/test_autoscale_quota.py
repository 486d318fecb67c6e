"""The local autoscaler stops at its namespace's quotas (issue 28, item 2): ``max_replicas``
and ``max_memory_mb`` counted over every group of the namespace in this process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from plughost.backends.local.autoscale import (
    CEILING,
    Autoscaler,
    ScalePolicy,
    start_autoscaler,
)
from plughost.domain.quotas import NamespacePolicy


@dataclass(eq=False)
class Replica:
    in_flight: int = 0
    alive: bool = True

    async def stop(self, drain_timeout_s: float) -> None:
        pass


@dataclass
class Spec:
    namespace_id: str
    serve_config: dict[str, Any] = field(default_factory=dict)
    deployment_name: str = "custom_plugin_x"


class Settings:
    drain_timeout_s = 1.0
    warm_spare = False
    sandbox_memory_gb = 1.0


class Group:
    def __init__(self, namespace_id: str, replicas: int, serve_config: dict[str, Any]) -> None:
        self.spec = Spec(namespace_id, serve_config)
        self.settings = Settings()
        self.replicas = [Replica() for _ in range(replicas)]
        self.retired: set[Replica] = set()
        self.autoscaler: Autoscaler | None = None

    async def launch(self, hold_fd: int | None = None) -> Replica:
        self.replicas.append(Replica())
        return self.replicas[-1]


@pytest.fixture
def policies() -> Iterator[dict[str, NamespacePolicy]]:
    table: dict[str, NamespacePolicy] = {}
    before = CEILING.limits
    CEILING.limits = lambda ns: table.get(ns, NamespacePolicy(ns))
    try:
        yield table
    finally:
        CEILING.limits = before


def busy(group: Group) -> None:
    for replica in group.replicas:
        replica.in_flight = 10


def test_a_scale_up_stops_at_the_namespace_max_replicas(
    policies: dict[str, NamespacePolicy],
) -> None:
    policies["ns_q"] = NamespacePolicy("ns_q", max_replicas=4)

    async def scenario() -> None:
        fixed = Group("ns_q", 2, {"num_replicas": 2})  # another plugin of the namespace
        assert start_autoscaler(fixed) is None  # no scaler, but it counts
        scaled = Group("ns_q", 1, {"min_replicas": 1, "max_replicas": 8})
        scaler = scaled.autoscaler = Autoscaler(scaled, ScalePolicy(1, 8, 1.0, 0.0, 60.0))
        CEILING.register(scaled)  # as start_autoscaler does, without its task
        busy(scaled)
        await scaler.step(0.0)
        assert len(scaled.replicas) == 2  # 2 + 2 = the quota of 4
        assert scaler.note is not None and "max_replicas=4" in scaler.note
        busy(scaled)
        await scaler.step(1.0)
        assert len(scaled.replicas) == 2
        fixed.replicas.pop()  # the other plugin gives one back
        await scaler.step(2.0)
        assert len(scaled.replicas) == 3

    asyncio.run(scenario())


def test_a_scale_up_stops_at_the_namespace_memory_and_other_namespaces_are_free(
    policies: dict[str, NamespacePolicy],
) -> None:
    policies["ns_m"] = NamespacePolicy("ns_m", max_memory_mb=3 * 1024)

    async def scenario() -> None:
        group = Group("ns_m", 1, {"min_replicas": 1, "max_replicas": 8})  # 1 GB default
        scaler = group.autoscaler = Autoscaler(group, ScalePolicy(1, 8, 1.0, 0.0, 60.0))
        CEILING.register(group)
        busy(group)
        await scaler.step(0.0)
        assert len(group.replicas) == 3
        assert scaler.note is not None and "max_memory_mb=3072" in scaler.note
        free = Group("ns_free", 1, {"min_replicas": 1, "max_replicas": 8, "memory_gb": 0.001})
        free_scaler = free.autoscaler = Autoscaler(free, ScalePolicy(1, 8, 1.0, 0.0, 60.0))
        CEILING.register(free)
        busy(free)
        await free_scaler.step(0.0)
        assert len(free.replicas) == 8 and free_scaler.note is None  # no quota there

    asyncio.run(scenario())
