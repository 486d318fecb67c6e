"""A Ray replica's worker output on its way to the server (relay mode L, without Ray): a
line with terminal control or of 10 MB is escaped and cut before it is queued or sent, so
the server's follower (which reads lines of at most 64 KiB) keeps following, stream tags
survive, and the log store keeps the lines escaped as for a local replica."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from plughost.backends.ray.direct import MAX_LOG_LINE_BYTES, DirectSet
from plughost.backends.ray.node import WorkerConfig
from plughost.backends.ray.relay import WIRE_LINE_BYTES, OutputFeed
from plughost.backends.ray.worker import WorkerHost
from plughost.logs.capture import REPLICA_OUTPUT
from plughost.logs.output import OutputLimits, ReplicaLogs
from plughost.logs.store import LogStore
from plughost.logs.tags import STDOUT_TAG

RAW_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
REALTIME = r"""
import sys


class Service:
    def __call__(self, inputs, parameters):
        print("hostile \x1b[2J\x1b]0;pwned title\x07\r\x9b31m\u202eevil")
        sys.stdout.write("y" * (10 * 1024 * 1024) + "\n")
        sys.stdout.flush()
        print("after huge")
        return {"ok": True}


def get_inference_service(**kwargs):
    return Service()
"""


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerHost]:
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "realtime.py").write_text(textwrap.dedent(REALTIME))
    worker = WorkerHost(
        folder,
        {},
        WorkerConfig(sandbox={"mode": "off"}, release_id=9),
        (),
        None,
        exit_with_worker=False,
    )
    try:
        yield worker
    finally:
        worker.close()


def test_feed_lines_are_escaped_cut_and_keep_their_tag() -> None:
    feed = OutputFeed()
    feed.add(7, STDOUT_TAG + "\x1b[2J" + "é" * 100_000)
    (data,) = list(feed._unsent)
    assert len(data) < MAX_LOG_LINE_BYTES
    pid, line = json.loads(data)
    assert pid == 7 and line.startswith(STDOUT_TAG + "\\x1b[2J")
    assert line.endswith(" bytes cut]") and len(line.encode()) < WIRE_LINE_BYTES + 64
    assert not RAW_CONTROL.search(line[len(STDOUT_TAG) :])


def test_a_huge_hostile_line_neither_stops_the_follower_nor_reaches_the_store_raw(
    host: WorkerHost, tmp_path: Path
) -> None:
    logs = ReplicaLogs(LogStore(tmp_path), OutputLimits(max_line_bytes=4096, echo_lines=0))

    def sink(pid: int, line: str) -> None:  # as the server's release sink does
        logs.emit(("ns", "p"), 9, f"r9-{pid}", line)

    async def run() -> None:
        token = REPLICA_OUTPUT.set(sink)
        try:
            direct = DirectSet("app", "node-a", call_timeout_s=30)
        finally:
            REPLICA_OUTPUT.reset(token)
        direct.update(
            {
                "r1": {
                    "node_id": "node-b",
                    "host": host.address,
                    "port": host.tcp_port,
                    "unix": str(host.socket_path),
                    "secret": host.secret.hex(),
                }
            }
        )
        try:
            deadline = asyncio.get_running_loop().time() + 20
            while not direct.ready and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
            await direct.call_body(b'{"inputs": {}, "parameters": {}}')
            while asyncio.get_running_loop().time() < deadline + 20:
                if any(e.line == "after huge" for e in logs.store.read([9])):
                    return
                await asyncio.sleep(0.05)
        finally:
            direct.close()

    asyncio.run(run())
    lines = logs.store.read([9])
    assert any(e.line == "after huge" for e in lines), "the follower stopped at the huge line"
    hostile = [e for e in lines if e.line.startswith("hostile")]
    assert hostile and hostile[0].stream == "stdout"
    assert hostile[0].line == "hostile \\x1b[2J\\x1b]0;pwned title\\x07\\x0d\\x9b31m\\u202eevil"
    assert all(not RAW_CONTROL.search(e.line) for e in lines)
    assert all(len(e.line.encode()) <= 4096 + 40 for e in lines)
    assert any(e.line.startswith("yyy") and e.line.endswith(" bytes cut]") for e in lines)
