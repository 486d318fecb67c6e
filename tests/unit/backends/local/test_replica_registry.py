"""The local replica registry and output file (issue 14): records written atomically and
privately, a process known by pid and start time only, output read on from where the last
server stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from plughost.backends.local.output import FileTail
from plughost.backends.local.registry import (
    ReplicaRecord,
    ReplicaRegistry,
    code_hash,
    is_running,
    process_start_time,
    signal_recorded,
    socket_folder,
)


def _record(pid: int, **kw: object) -> ReplicaRecord:
    fields: dict[str, object] = {
        "replica_id": "r1-abcd", "release_id": 1, "deployment_name": "custom_plugin_x_1_0_0",
        "code_hash": "h", "env_path": None, "pid": pid,
        "start_time": process_start_time(pid) or 0, "socket_path": "/tmp/x.sock",
        "secret": "00" * 32, "output_path": "/tmp/x.out",
    }
    fields.update(kw)
    return ReplicaRecord(**fields)  # type: ignore[arg-type]


def test_records_are_private_and_read_back(tmp_path: Path) -> None:
    registry = ReplicaRegistry(tmp_path / "replicas")
    record = _record(os.getpid())
    registry.write(record)
    (path,) = (tmp_path / "replicas").glob("*.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "replicas").stat().st_mode) == 0o700
    (tmp_path / "replicas" / "broken.json").write_text("{not json")
    assert registry.load() == [record]
    assert not (tmp_path / "replicas" / "broken.json").exists()
    registry.remove(record.replica_id)
    assert registry.load() == []


def test_a_pid_with_another_start_time_is_never_signalled() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             start_new_session=True)
    try:
        record = _record(child.pid)
        assert is_running(record)
        stale = replace(record, start_time=record.start_time - 1)
        assert not is_running(stale)
        assert signal_recorded(stale, signal.SIGKILL) is False
        assert child.poll() is None
        assert signal_recorded(record, signal.SIGKILL) is True
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_code_hash_follows_names_and_contents(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    first = code_hash(tmp_path)
    assert code_hash(tmp_path) == first
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")
    assert code_hash(tmp_path) != first


def test_the_socket_folder_is_stable_per_home_and_private(tmp_path: Path) -> None:
    folder = socket_folder(tmp_path / "home")
    assert folder == socket_folder(tmp_path / "home")
    assert folder != socket_folder(tmp_path / "other")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_second_reader_goes_on_where_the_first_stopped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "r1.out"
    with out.open("ab") as writer:
        writer.write(b"one\ntwo\n")
        writer.flush()
        first = FileTail(out, 7)
        first.catch_up()
        first.close()
        writer.write(b"three\n")  # written while no server reads
        writer.flush()

    async def second_reader() -> list[str]:
        tail = FileTail(out, 7)
        task = asyncio.create_task(tail.run())
        for _ in range(1500):  # until the tail read what was there (bounded: 30 s or more)
            if tail.tail:
                break
            await asyncio.sleep(0.02)
        tail.close()
        await task
        return list(tail.tail)

    with caplog.at_level(logging.INFO, logger="plughost.replica.output"):
        caplog.clear()  # the first reader's lines, when another test left the logger at INFO
        assert asyncio.run(second_reader()) == ["three"]
    assert [r.getMessage() for r in caplog.records] == ["replica 7: three"]


def test_a_replica_of_a_live_server_is_left_alone_and_one_of_a_dead_server_is_found(
    tmp_path: Path,
) -> None:
    from plughost.backends.local.adopt import Adoption

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             start_new_session=True)
    try:
        registry = ReplicaRegistry(tmp_path / "replicas")
        parent = os.getppid()  # a live "server" that is not this one
        registry.write(_record(child.pid, replica_id="r1-live", server_pid=parent,
                               server_start_time=process_start_time(parent) or 0))
        adoption = Adoption(registry, lambda: {1})
        assert adoption.found == {}
        registry.write(_record(child.pid, replica_id="r1-dead", server_pid=parent,
                               server_start_time=1))  # that pid, another start: gone
        assert adoption.rescan() == 1
        assert [r.replica_id for r in adoption.found[1]] == ["r1-dead"]
        assert adoption.rescan() == 0
        registry.write(_record(child.pid + 10**6, replica_id="r1-gone"))
        adoption.rescan()
        assert "r1-gone" not in {r.replica_id for r in registry.load()}
    finally:
        child.kill()
        child.wait()
