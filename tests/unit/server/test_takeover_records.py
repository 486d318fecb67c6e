"""The old server's side of a takeover in plughost.server.takeover: its replica records let go
(they name no server, so the registry counts them as a gone server's and the successor
adopts them; the adoption side itself is plughost.backends.local.adopt's), and they come
back when the takeover does not happen; another server's records on the home stay as they
are."""

from __future__ import annotations

import os
from pathlib import Path

from plughost.backends.local.registry import (
    ReplicaRecord,
    ReplicaRegistry,
    process_start_time,
    server_running,
)
from plughost.config import Settings
from plughost.server.takeover import hand_replicas, take_replicas_back


def _record(replica_id: str, server_pid: int) -> ReplicaRecord:
    return ReplicaRecord(
        replica_id=replica_id, release_id=1, deployment_name="custom_plugin_x_1_0_0",
        code_hash="h", env_path=None, pid=1, start_time=1, socket_path="/tmp/x.sock",
        secret="00", output_path="/tmp/x.out", server_pid=server_pid,
        server_start_time=process_start_time(server_pid) or 0,
    )


def _owners(registry: ReplicaRegistry) -> dict[str, int]:
    return {r.replica_id: r.server_pid for r in registry.load()}


def test_records_let_go_for_the_successor_and_come_back_if_it_fails(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", port=18081)
    registry = ReplicaRegistry(settings.replicas_dir)
    me, successor, other = os.getpid(), os.getppid(), 1
    for rid, owner in (("r1-a", me), ("r1-b", me), ("r2-c", other)):
        registry.write(_record(rid, owner))

    handed = hand_replicas(settings)

    assert sorted(r.replica_id for r in handed) == ["r1-a", "r1-b"]
    assert _owners(registry) == {"r1-a": 0, "r1-b": 0, "r2-c": other}
    let_go = {r.replica_id: r for r in registry.load()}["r1-a"]
    assert not server_running(let_go)  # a gone server's: the next scan adopts it

    # the successor adopted r1-b (its adoption rewrote the record to name it) and died
    registry.write(_record("r1-b", successor))
    take_replicas_back(settings, handed)
    assert _owners(registry) == {"r1-a": me, "r1-b": me, "r2-c": other}


def test_nothing_to_hand_over_on_ray(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", port=18082, backend="ray")
    assert hand_replicas(settings) == []
