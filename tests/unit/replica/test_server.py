"""The replica's socket server, run in-process: pipelining, error replies, drain on stop."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from plughost.replica.invoke import ServiceInvoker
from plughost.replica.protocol import (
    encode_cancel_request,
    encode_frame,
    encode_request,
    read_frame,
)
from plughost.replica.server import ReplicaServer

Scenario = Callable[[ReplicaServer, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[Any]]


@pytest.fixture
def socket_path() -> Iterator[Path]:
    """A socket path short enough for sun_path (pytest's tmp_path may not be)."""
    folder = Path(tempfile.mkdtemp(prefix="phw", dir="/tmp"))
    try:
        yield folder / "s.sock"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


STARTED: dict[str, asyncio.Event] = {}  # by name: set once a "sleep" call with that signal runs


async def plugin(inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
    """A test service: ``inputs["action"]`` picks the behaviour."""
    action = inputs.get("action")
    if action == "sleep":
        if "signal" in inputs:  # tell the test the call is running
            STARTED[inputs["signal"]].set()
        await asyncio.sleep(inputs["seconds"])
        return {"slept": inputs["seconds"]}
    if action == "raise":
        raise ValueError(inputs.get("message", "boom"))
    if action == "exit":
        raise SystemExit(4)
    if action == "unencodable":
        return {"value": object()}
    return {"echo": inputs, "parameters": parameters}


def run_scenario(
    socket_path: Path, scenario: Scenario, health: Callable[[], Any] | None = None
) -> Any:
    """Serve ``plugin`` on ``socket_path``, connect, run ``scenario``, then stop the server."""

    async def go() -> Any:
        server = ReplicaServer(ServiceInvoker(plugin, health), socket_path, drain_timeout_s=5)
        await server.start()
        serving = asyncio.create_task(server.serve_until_stopped())
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        try:
            return await asyncio.wait_for(scenario(server, reader, writer), 10)
        finally:
            server.request_stop()
            await asyncio.wait_for(serving, 10)
            writer.close()

    return asyncio.run(go())


async def send(writer: asyncio.StreamWriter, body: bytes) -> None:
    writer.write(encode_frame(body))
    await writer.drain()


async def receive(reader: asyncio.StreamReader) -> dict[str, Any]:
    body = await read_frame(reader)
    assert body is not None, "server closed the connection"
    reply: dict[str, Any] = orjson.loads(body)
    return reply


def test_pipelined_requests_are_answered_out_of_order_and_matched_by_id(
    socket_path: Path,
) -> None:
    async def scenario(
        _: ReplicaServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> list[dict[str, Any]]:
        await send(writer, encode_request(1, "call", {"action": "sleep", "seconds": 0.3}))
        await send(writer, encode_request(2, "call", {"n": 2}, {"p": True}))
        await send(writer, encode_request(3, "health"))
        return [await receive(reader) for _ in range(3)]

    replies = run_scenario(socket_path, scenario)
    assert [r["id"] for r in replies] == [2, 3, 1]
    assert replies[0] == {
        "id": 2,
        "ok": True,
        "result": {"echo": {"n": 2}, "parameters": {"p": True}},
    }
    assert replies[1] == {"id": 3, "ok": True, "result": True}
    assert replies[2]["result"] == {"slept": 0.3}


def test_plugin_exception_is_an_error_reply_and_the_server_keeps_serving(
    socket_path: Path,
) -> None:
    async def scenario(
        _: ReplicaServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> list[dict[str, Any]]:
        await send(writer, encode_request(1, "call", {"action": "raise", "message": "bad text"}))
        first = await receive(reader)
        await send(writer, encode_request(2, "call", {"action": "exit"}))
        second = await receive(reader)
        await send(writer, encode_request(3, "call", {"n": 1}))
        return [first, second, await receive(reader)]

    first, second, third = run_scenario(socket_path, scenario)
    assert first == {"id": 1, "ok": False, "error": {"type": "ValueError", "message": "bad text"}}
    assert second["error"]["type"] == "SystemExit"
    assert third["ok"] is True


@pytest.mark.parametrize(
    ("body", "expected_id", "error_type", "message"),
    [
        (b'{"id":5,"op":"call","inputs":{broken', 5, "ProtocolError", "not valid JSON"),
        (b"[1,2]", None, "ProtocolError", "JSON list"),
        (b'{"op":"call"}', None, "ProtocolError", "no integer id"),
        (b'{"id":true,"op":"call"}', None, "ProtocolError", "no integer id"),
        (b'{"id":6,"op":"explode"}', 6, "ProtocolError", "unknown op"),
        (b'{"id":7,"op":"call","inputs":[1]}', 7, "ValidationError", "inputs must be"),
        (b'{"id":8,"op":"call","parameters":"x"}', 8, "ValidationError", "parameters must"),
        (b'{"id":9,"op":"call","body":3}', 9, "ValidationError", "body must be"),
        (
            b'{"id":10,"op":"call","inputs":{"action":"unencodable"}}',
            10,
            "ResultEncodingError",
            "not JSON serializable",
        ),
    ],
)
def test_bad_requests_and_results_get_error_replies(
    socket_path: Path, body: bytes, expected_id: int | None, error_type: str, message: str
) -> None:
    async def scenario(
        _: ReplicaServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        await send(writer, body)
        reply = await receive(reader)
        await send(writer, encode_request(99, "health"))
        return reply, await receive(reader)

    reply, after = run_scenario(socket_path, scenario)
    assert reply["id"] == expected_id
    assert reply["ok"] is False
    assert reply["error"]["type"] == error_type
    assert message in reply["error"]["message"]
    # the worker's own refusals are marked as such; what the plugin's code did is not
    refused = error_type in ("ProtocolError", "ValidationError")
    assert reply["error"].get("origin") == ("worker" if refused else None)
    assert after == {"id": 99, "ok": True, "result": True}


def test_spliced_raw_body_supplies_inputs_and_parameters(socket_path: Path) -> None:
    async def scenario(
        _: ReplicaServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> dict[str, Any]:
        await send(writer, b'{"id":4,"op":"call","body":{"inputs":{"a":1},"parameters":{"b":2}}}')
        return await receive(reader)

    reply = run_scenario(socket_path, scenario)
    assert reply["result"] == {"echo": {"a": 1}, "parameters": {"b": 2}}


def test_raising_health_check_reports_unhealthy(socket_path: Path) -> None:
    def health() -> bool:
        raise RuntimeError("gpu lost")

    async def scenario(
        _: ReplicaServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> dict[str, Any]:
        await send(writer, encode_request(1, "health"))
        return await receive(reader)

    assert run_scenario(socket_path, scenario, health) == {"id": 1, "ok": True, "result": False}


def test_stop_drains_in_flight_calls_then_closes_and_removes_the_socket(
    socket_path: Path,
) -> None:
    async def scenario(
        server: ReplicaServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[dict[str, Any], bytes | None, bool]:
        STARTED["drain"] = asyncio.Event()
        call = {"action": "sleep", "seconds": 0.3, "signal": "drain"}
        await send(writer, encode_request(1, "call", call))
        await STARTED["drain"].wait()  # in flight when the stop comes
        server.request_stop()
        reply = await receive(reader)
        after = await read_frame(reader)
        return reply, after, socket_path.exists()

    reply, after, socket_exists = run_scenario(socket_path, scenario)
    assert reply == {"id": 1, "ok": True, "result": {"slept": 0.3}}
    assert after is None
    assert not socket_exists


def test_every_cancel_is_answered_even_one_that_arrives_with_its_call(socket_path: Path) -> None:
    """A cancel read in the same chunk as its call finds the call's task not yet started; the
    host waits for an answer to each cancel (else it takes the replica for hung), so one
    comes: the call's cancelled reply. A cancel of a running call and of an unknown one too."""

    async def scenario(
        _: ReplicaServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> list[dict[str, Any]]:
        call = encode_frame(encode_request(1, "call", {"action": "sleep", "seconds": 5}))
        writer.write(call + encode_frame(encode_cancel_request(1)))  # one write, one read
        await writer.drain()
        first = await receive(reader)
        await send(writer, encode_request(2, "call", {"action": "sleep", "seconds": 5}))
        await asyncio.sleep(0.2)
        await send(writer, encode_cancel_request(2))
        second = await receive(reader)
        await send(writer, encode_cancel_request(99))
        return [first, second, await receive(reader)]

    replies = run_scenario(socket_path, scenario)
    assert [r["id"] for r in replies] == [1, 2, 99]
    assert all(r["ok"] is False for r in replies)
    assert [r["error"]["type"] for r in replies] == ["CancelledError"] * 3
    assert [r["error"]["origin"] for r in replies] == ["worker"] * 3
