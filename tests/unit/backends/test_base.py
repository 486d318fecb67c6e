"""The declared interface of backends and groups: every group class answers ``snapshot()``
with a GroupSnapshot, and a backend without a capability gets its declared default."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import plughost.backends
import plughost.cluster
from plughost.backends.base import (
    Backend,
    GroupHealth,
    GroupSnapshot,
    GroupSpec,
    ReplicaGroup,
    plain_snapshot,
)
from plughost.backends.local.autoscale import Autoscaler, ScalePolicy
from plughost.backends.local.group import LocalReplicaGroup
from plughost.cluster.forward import ForwardGroup, forward_spec

SPEC = GroupSpec("custom_plugin_x", 7, Path("/nonexistent"), num_replicas=2)


def _local() -> LocalReplicaGroup:
    settings: Any = SimpleNamespace(max_start_crashes=3, drain_timeout_s=1.0)
    return LocalReplicaGroup(SPEC, settings, Path("/nonexistent"), None)


def _ray() -> ReplicaGroup:
    from plughost.backends.ray.direct import DirectSet
    from plughost.backends.ray.group import RayReplicaGroup

    backend: Any = SimpleNamespace(
        settings=SimpleNamespace(replica_call_timeout_s=1.0),
        direct_set=lambda app: DirectSet(app, "node", 1.0),
        board=SimpleNamespace(fetched_at=0.0, apps={}),
    )
    handle = SimpleNamespace(options=lambda **_: None)
    return RayReplicaGroup(SPEC, "app", backend, handle, [])


def _forward() -> ReplicaGroup:
    return ForwardGroup(forward_spec("custom_plugin_x", 7, "ns"), peers=None)  # type: ignore[arg-type]


def _group_classes() -> set[type]:
    """Every ReplicaGroup class in the packages that hold groups (all their modules loaded)."""
    for package in (plughost.backends, plughost.cluster):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    found, todo = set(), list(ReplicaGroup.__subclasses__())
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return {c for c in found if c.__module__.startswith("plughost.")}


def test_every_group_class_implements_the_whole_interface() -> None:
    pytest.importorskip("ray")
    groups = {_local(), _ray(), _forward()}
    made = {type(g) for g in groups}
    assert _group_classes() <= made, f"a group class unchecked here: {_group_classes() - made}"
    for group in groups:
        assert not type(group).__abstractmethods__
        snap = group.snapshot()
        assert isinstance(snap, GroupSnapshot), type(group)
        assert snap.target >= 0 and snap.ready >= 0 and snap.starting >= 0


def test_a_group_missing_snapshot_cannot_be_built() -> None:
    class Partial(ReplicaGroup):
        async def call_body(self, body: bytes, deadline_s: float | None = None) -> bytes:
            return body

        async def health(self) -> bool:
            return True

        def observe(self) -> GroupHealth:
            return GroupHealth(1, 1)

        async def stop(self, drain_timeout_s: float) -> None:
            return None

    with pytest.raises(TypeError, match="snapshot"):
        Partial()  # type: ignore[abstract]


def test_a_plain_snapshot_counts_the_replicas_not_ready_as_starting() -> None:
    assert plain_snapshot(GroupHealth(desired=3, ready=1)) == GroupSnapshot(1, 2, 3)
    assert plain_snapshot(GroupHealth(desired=1, ready=2)) == GroupSnapshot(2, 0, 1)


def test_a_local_snapshot_carries_restarts_the_last_exit_and_the_autoscaler() -> None:
    group = _local()
    assert group.snapshot() == GroupSnapshot(ready=0, starting=0, target=2)
    group.restarts, group.last_exit = 2, (time.time(), "replica 11: killed (SIGKILL)")
    scaler = Autoscaler(group, ScalePolicy(1, 4, 2.0, 0.0, 60.0, zero_after_s=5.0))
    scaler.note, scaler.cold_starts, scaler.target = "memory cap", [0.5, 0.25, 0.75], 0
    group.autoscaler = scaler
    snap = group.snapshot()
    assert (snap.restarts, snap.last_exit) == (2, group.last_exit)
    assert snap.note == "memory cap" and snap.target == 0
    assert snap.at_zero and snap.cold_start_s == 0.5
    scaler.starting = 1
    snap = group.snapshot()
    assert snap.starting == 1 and not snap.at_zero


def test_a_backend_without_capabilities_has_the_declared_defaults() -> None:
    class Bare(Backend):
        name = "bare"

        async def start(self, spec: GroupSpec) -> ReplicaGroup:
            raise NotImplementedError

        async def shutdown(self) -> None:
            return None

    bare = Bare()
    assert bare.keeps_replicas_on_stop is False
    assert bare.sandbox_report() is None
    assert bare.build() is bare
    assert asyncio.run(bare.ray_session()) is None
