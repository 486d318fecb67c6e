"""The replica pool's pure parts (plughost.backends.local.pool): its size by memory, a slot
filled with hard links to a release's files, and the claim a member reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson

from plughost.backends.local.adopt import started_record
from plughost.backends.local.launch import ReplicaSpec, build_replica_command
from plughost.backends.local.pool import (
    MEMBER_MIB,
    MEMORY_RESERVE_MIB,
    Claim,
    available_memory_mib,
    fill_slot,
    pool_size,
    remove_slot,
    server_tag,
    sweep_slots,
)
from plughost.backends.local.registry import ReplicaRegistry


def test_the_pool_keeps_what_is_asked_while_memory_allows() -> None:
    assert pool_size(2, None) == 2
    assert pool_size(2, 64 * 1024) == 2
    assert pool_size(0, 64 * 1024) == 0


def test_the_pool_shrinks_when_available_memory_is_short() -> None:
    assert pool_size(4, MEMORY_RESERVE_MIB + MEMBER_MIB) == 1
    assert pool_size(4, MEMORY_RESERVE_MIB) == 0
    assert pool_size(4, 100) == 0  # below the reserve: none, never a negative count


def test_available_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  8000000 kB\nMemAvailable:  2097152 kB\n")
    assert available_memory_mib(meminfo) == 2048
    meminfo.write_text("MemTotal:  8000000 kB\n")
    assert available_memory_mib(meminfo) is None
    assert available_memory_mib(tmp_path / "missing") is None


def _slot(root: Path) -> Path:
    slot = root / "pool-1"
    for name in ("plugin", "models"):
        (slot / name).mkdir(parents=True)
    return slot


def test_a_slot_is_filled_with_hard_links_to_the_release_and_its_models(tmp_path: Path) -> None:
    release = tmp_path / "release"
    (release / "pkg").mkdir(parents=True)
    (release / "realtime.py").write_text("x = 1\n")
    (release / "pkg" / "mod.py").write_text("y = 2\n")
    models = tmp_path / "ns_a"
    (models / "m_1").mkdir(parents=True)
    (models / "index.json").write_text('{"models": {}}')
    (models / "m_1" / "weights.bin").write_bytes(b"w")
    slot = _slot(tmp_path)
    fill_slot(slot, release, models)
    assert (slot / "plugin" / "realtime.py").read_text() == "x = 1\n"
    assert (slot / "plugin" / "pkg" / "mod.py").read_text() == "y = 2\n"
    assert os.stat(slot / "plugin" / "realtime.py").st_ino == os.stat(release / "realtime.py").st_ino
    assert (slot / "models" / "m_1" / "weights.bin").read_bytes() == b"w"
    remove_slot(slot)
    assert not slot.exists() and (release / "realtime.py").exists()  # links only


def test_a_slot_without_models_gets_only_the_plugin(tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    (release / "realtime.py").write_text("x = 1\n")
    slot = _slot(tmp_path)
    fill_slot(slot, release, None)
    assert [p.name for p in (slot / "plugin").iterdir()] == ["realtime.py"]
    assert list((slot / "models").iterdir()) == []


def test_the_claim_carries_the_release_environment_options_and_preload(tmp_path: Path) -> None:
    spec = ReplicaSpec(plugin_dir=tmp_path, socket_path=tmp_path / "s.sock")
    claim = Claim(spec, tmp_path, None, {"SECRET_THING": "v"}, {"--init-kwargs": "{}"},
                  {"modules": ["json"], "env": {}})
    assert orjson.loads(claim.message()) == {
        "env": {"SECRET_THING": "v"},
        "args": {"--init-kwargs": "{}"},
        "preload": {"modules": ["json"], "env": {}},
    }


def test_a_member_is_launched_with_its_claim_descriptor_and_no_release_options(
    tmp_path: Path,
) -> None:
    spec = ReplicaSpec(plugin_dir=tmp_path, socket_path=tmp_path / "s.sock", hold_fd=7,
                       pooled=True)
    argv = build_replica_command(spec)
    assert argv[argv.index("-m") + 1] == "plughost.replica.spare"
    assert argv[argv.index("--claim-fd") + 1] == "7" and "--hold-fd" not in argv
    assert json.loads(argv[argv.index("--init-kwargs") + 1]) == {}
    assert "--requirements" not in argv and "--serving" not in argv


def test_slots_of_servers_gone_are_swept_unless_an_adopted_replica_still_uses_one(
    tmp_path: Path,
) -> None:
    root = tmp_path / "pool"
    mine = root / server_tag(os.getpid())
    gone = root / "999999999-1"  # no such process
    for slot in (mine / "pool-a", gone / "pool-b", gone / "pool-c"):
        (slot / "plugin").mkdir(parents=True)
    registry = ReplicaRegistry(tmp_path / "replicas")
    registry.write(started_record(
        os.getpid(), "pool-c", 1, "d", "digest", None, tmp_path / "s.sock", "x",
        tmp_path / "o.out", None,
    ))
    sweep_slots(root, registry)
    assert (mine / "pool-a").is_dir()  # a running server's
    assert not (gone / "pool-b").exists()  # nobody's
    assert (gone / "pool-c").is_dir()  # a recorded replica may still run from it
