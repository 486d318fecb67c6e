"""A worker's own connections to the home's replicas (plughost.cluster.direct): found in the
registry, authenticated with each replica's secret, called directly; None (forward to the
leader) while none is connected, after a replica went away, or when a secret is wrong."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from plughost.backends.local.registry import ReplicaRecord, ReplicaRegistry
from plughost.cluster.direct import DirectReplicas
from plughost.replica import auth
from plughost.replica.invoke import ServiceInvoker
from plughost.replica.server import ReplicaServer

BODY = orjson.dumps({"inputs": {"x": 1}, "parameters": {}})


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="phd", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def echo(inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
    return {"echo": inputs}


def record(folder: Path, name: str, secret: str, release_id: int = 7) -> ReplicaRecord:
    return ReplicaRecord(
        replica_id=name,
        release_id=release_id,
        deployment_name="d",
        code_hash="h",
        env_path=None,
        pid=1,
        start_time=1,
        socket_path=str(folder / f"{name}.sock"),
        secret=secret,
        output_path=str(folder / f"{name}.out"),
    )


async def replica(rec: ReplicaRecord, secret: str) -> tuple[ReplicaServer, asyncio.Task[Any]]:
    server = ReplicaServer(ServiceInvoker(echo, None), Path(rec.socket_path), 5, secret=secret)
    await server.start()
    return server, asyncio.create_task(server.serve_until_stopped())


async def settle(direct: DirectReplicas, tries: int = 600) -> bytes | None:
    """Call until an answer comes (the connections are made in the background); None after
    ``tries`` calls 50 ms apart (the default, 30 s or more, only bounds a hang)."""
    for _ in range(tries):
        reply = await direct.call(7, BODY)
        if reply is not None:
            return reply
        await asyncio.sleep(0.05)
    return None


def test_calls_reach_the_recorded_replica_and_stop_when_it_goes(folder: Path) -> None:
    async def scenario() -> None:
        secret = auth.new_secret()
        rec = record(folder, "r1", secret)
        ReplicaRegistry(folder / "reg").write(rec)
        server, serving = await replica(rec, secret)
        direct = DirectReplicas(folder / "reg", call_timeout_s=5)
        try:
            assert await direct.call(7, BODY) is None  # nothing connected yet: forward
            assert orjson.loads(await settle(direct) or b"null") == {"echo": {"x": 1}}
            assert await direct.call(8, BODY) is None  # another release: none of its own
            server.request_stop()
            await asyncio.wait_for(serving, 10)
            await asyncio.sleep(0.1)
            assert await direct.call(7, BODY) is None  # gone: back to the leader
        finally:
            await direct.close()

    asyncio.run(scenario())


def test_a_replica_that_does_not_prove_the_recorded_secret_is_never_called(
    folder: Path,
) -> None:
    async def scenario() -> None:
        rec = record(folder, "r2", auth.new_secret())
        ReplicaRegistry(folder / "reg").write(rec)
        server, serving = await replica(rec, auth.new_secret())  # another secret
        direct = DirectReplicas(folder / "reg", call_timeout_s=5)
        try:
            # 60 calls 50 ms apart: many connection attempts (one scan per 0.2 s)
            assert await settle(direct, tries=60) is None
        finally:
            await direct.close()
            server.request_stop()
            await asyncio.wait_for(serving, 10)

    asyncio.run(scenario())
