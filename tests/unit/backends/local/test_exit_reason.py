"""Plain words for replicas that ran out of memory or died, and the restarts a local group
counts (issue 17): only replicas that ended unasked and were replaced, never the ones its
autoscaler retired."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from plughost.backends.base import GroupSnapshot
from plughost.backends.local.exit_reason import (
    describe_exit,
    explain_call,
    explain_start,
    memory_limit_mib,
)
from plughost.backends.local.group import LocalReplicaGroup
from plughost.backends.local.replica import ReplicaStartError
from plughost.errors import CallFailed, StartFailed
from plughost.metrics.series import Sampler


def test_the_limit_is_read_from_serve_config_memory_gb_else_the_default() -> None:
    assert memory_limit_mib({"memory_gb": 0.5}, 2.0) == 512
    assert memory_limit_mib({}, 2.0) == 2048
    assert memory_limit_mib({"memory_gb": "x"}, 1.0) == 1024


def test_a_start_that_ran_out_of_memory_names_the_limit() -> None:
    error = explain_start(ReplicaStartError("MemoryError: ", ("Traceback", "MemoryError")), 512)
    assert isinstance(error, ReplicaStartError) and error.output_tail
    assert str(error).startswith("the replica exceeded its memory limit of 512 MiB")
    assert "while starting (MemoryError; serve_config memory_gb raises the limit)" in str(error)
    other = StartFailed("ImportError: no module named x")
    assert explain_start(other, 512) is other and str(other) == "ImportError: no module named x"


def test_a_call_that_ran_out_of_memory_names_the_limit_and_others_stay() -> None:
    error = explain_call(CallFailed("MemoryError", ""), 512)
    assert error.type_name == "MemoryError"
    assert error.message.startswith("the replica exceeded its memory limit of 512 MiB")
    assert error.message.endswith("during this call (serve_config memory_gb raises the limit)")
    plain = CallFailed("ValueError", "bad")
    assert explain_call(plain, 512) is plain
    assert "ran out of memory" in explain_call(CallFailed("MemoryError", ""), None).message


def test_an_exit_is_told_in_words_never_a_bare_code() -> None:
    assert "exceeded its memory limit of 256 MiB" in describe_exit(
        -6, 256, ["terminate called after throwing an instance of 'std::bad_alloc'"]
    )
    killed = describe_exit(-9, 512)
    assert "SIGKILL" in killed and "out-of-memory killer" in killed and "512 MiB" in killed
    assert describe_exit(-11, None) == "the replica was killed by SIGSEGV"
    assert describe_exit(3, None) == "the replica exited with code 3"


def _group() -> LocalReplicaGroup:
    spec: Any = SimpleNamespace(serve_config={}, deployment_name="custom_plugin_x", num_replicas=2)
    settings: Any = SimpleNamespace(max_start_crashes=0, drain_timeout_s=1.0)
    return LocalReplicaGroup(spec, settings, Path("/nonexistent"), None)


@dataclass(eq=False)
class Ended:
    """A replica process that has exited."""

    pid: int
    returncode: int


def test_only_a_replica_that_ended_unasked_counts_as_a_restart() -> None:
    async def scenario() -> LocalReplicaGroup:
        group = _group()
        retired, crashed = Ended(10, -15), Ended(11, -9)
        group.replicas = [retired, crashed]
        group.retired.add(retired)  # the autoscaler took it out: not a restart
        group._on_exit(retired, 0.0)
        assert group.restarts == 0 and group.last_exit is None
        group._on_exit(crashed, 0.0)
        await asyncio.gather(*group._healers)
        return group

    group = asyncio.run(scenario())
    assert group.restarts == 1 and group.replicas == []
    assert group.last_exit is not None and "replica 11" in group.last_exit[1]
    assert "SIGKILL" in group.last_exit[1]
    assert "SIGKILL" in (group.observe().error or "")  # the crash loop says how it ended


class Fleet:
    """Stand-in controller: groups whose replicas come and go."""

    def __init__(self, groups: dict[int, Any]) -> None:
        self.groups = groups


def _scaled_group(pids: list[int], restarts: int | None) -> Any:
    """A group whose replicas are ``pids``; ``restarts`` None: a group that keeps no count
    (Ray's), whose snapshot says 0."""
    return SimpleNamespace(
        spec=SimpleNamespace(namespace_id="ns", deployment_name="custom_plugin_x", num_replicas=1),
        replicas=[SimpleNamespace(pid=p) for p in pids],
        snapshot=lambda: GroupSnapshot(len(pids), 0, len(pids), restarts=restarts or 0),
    )


def test_scaling_up_and_down_is_not_a_restart_and_crashes_are() -> None:
    routes = SimpleNamespace(lookup=lambda ns, name: None)
    fleet = Fleet({1: _scaled_group([1], 0)})
    sampler = Sampler(SimpleNamespace(by_plugin={}), fleet, routes)
    assert [f.restarts for f in sampler.replica_figures()] == [0]
    fleet.groups[1] = _scaled_group([1, 2, 3, 4], 0)  # the autoscaler added three
    assert [f.restarts for f in sampler.replica_figures()] == [0]
    fleet.groups[1] = _scaled_group([5], 0)  # back to one, a new pid after scale to zero
    assert [f.restarts for f in sampler.replica_figures()] == [0]
    fleet.groups[1] = _scaled_group([6], 2)  # two replicas crashed and were replaced
    assert [f.restarts for f in sampler.replica_figures()] == [2]
    fleet.groups[2] = _scaled_group([7], None)  # a Ray group keeps no count
    assert [f.restarts for f in sampler.replica_figures()] == [2, 0]
