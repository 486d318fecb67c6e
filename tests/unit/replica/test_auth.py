"""The replica's connection handshake (issue 14): nothing is served before a hello that
proves the per-replica secret, and the replica's answer proves it back."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from plughost.replica import auth
from plughost.replica.invoke import ServiceInvoker
from plughost.replica.protocol import encode_frame, encode_request, read_frame
from plughost.replica.server import ReplicaServer

SECRET = auth.new_secret()


@pytest.fixture
def socket_path() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="pha", dir="/tmp"))
    try:
        yield folder / "s.sock"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def echo(inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
    return {"echo": inputs}


def hello(request_id: int, secret: str = SECRET) -> bytes:
    nonce = auth.new_nonce()
    token = auth.server_token(secret, nonce)
    return orjson.dumps({"id": request_id, "op": "hello", "nonce": nonce, "token": token})


async def exchange(socket_path: Path, frames: list[bytes]) -> list[dict[str, Any] | None]:
    """Send each frame and read one reply (None once the replica closed the connection)."""
    server = ReplicaServer(ServiceInvoker(echo, None), socket_path, 5, secret=SECRET)
    await server.start()
    serving = asyncio.create_task(server.serve_until_stopped())
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    replies: list[dict[str, Any] | None] = []
    try:
        for frame in frames:
            try:
                writer.write(encode_frame(frame))
                await writer.drain()
                body = await asyncio.wait_for(read_frame(reader), 5)
            except ConnectionError:
                body = None
            replies.append(orjson.loads(body) if body is not None else None)
        if server.idle_since is None:
            replies.append({"idle": False})
    finally:
        server.request_stop()
        await asyncio.wait_for(serving, 10)
        writer.close()
    return replies


def test_a_call_before_the_hello_is_refused_and_the_connection_closed(socket_path: Path) -> None:
    first, second = asyncio.run(exchange(socket_path, [
        encode_request(1, "call", {"x": 1}), encode_request(2, "call", {"x": 2}),
    ]))
    assert first is not None and first["ok"] is False
    assert first["error"]["origin"] == "worker"
    assert second is None


def test_a_hello_with_the_wrong_secret_is_refused(socket_path: Path) -> None:
    first, second = asyncio.run(exchange(socket_path, [
        hello(1, auth.new_secret()), encode_request(2, "call", {"x": 2}),
    ]))
    assert first is not None and first["ok"] is False
    assert second is None


def test_the_right_hello_gets_a_proof_and_then_calls_are_served(socket_path: Path) -> None:
    nonce = auth.new_nonce()
    frame = orjson.dumps({
        "id": 1, "op": "hello", "nonce": nonce, "token": auth.server_token(SECRET, nonce)
    })
    first, second, idle = asyncio.run(exchange(socket_path, [
        frame, encode_request(2, "call", {"x": 2}),
    ]))
    assert first is not None and first["ok"] is True
    assert auth.proof_ok(SECRET, nonce, first["result"]["proof"])
    assert not auth.proof_ok(auth.new_secret(), nonce, first["result"]["proof"])
    assert first["result"]["pid"] == os.getpid()
    assert second == {"id": 2, "ok": True, "result": {"echo": {"x": 2}}}
    assert idle == {"idle": False}  # an authenticated server is connected: no orphan timer


def test_the_secret_is_read_from_stdin_and_stdin_then_reads_nothing() -> None:
    read, write = os.pipe()
    saved = os.dup(0)
    try:
        os.write(write, (SECRET + "\n").encode())
        os.close(write)
        os.dup2(read, 0)
        os.close(read)
        assert auth.read_secret_from_stdin() == SECRET
        assert os.read(0, 10) == b""
    finally:
        os.dup2(saved, 0)
        os.close(saved)


def test_a_replica_with_no_server_connected_for_the_orphan_timeout_stops(
    socket_path: Path,
) -> None:
    from plughost.replica.main import _watch_orphan

    async def go() -> bool:
        server = ReplicaServer(ServiceInvoker(echo, None), socket_path, 5, secret=SECRET)
        await server.start()
        serving = asyncio.create_task(server.serve_until_stopped())
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        writer.write(encode_frame(hello(1)))
        await writer.drain()
        answer = await asyncio.wait_for(read_frame(reader), 10)  # the hello was accepted
        assert answer is not None and orjson.loads(answer)["ok"] is True
        assert server.idle_since is None  # a server is connected: no clock runs
        writer.close()
        await asyncio.wait_for(_watch_orphan(server, 0.2), 30)
        await asyncio.wait_for(serving, 10)
        return True

    assert asyncio.run(go())
