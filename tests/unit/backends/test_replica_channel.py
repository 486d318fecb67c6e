"""The replica connection's client end against a scripted peer on a real Unix socket."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from plughost.backends.channel import ChannelClosed, ReplicaChannel
from plughost.replica.protocol import (
    FrameBuffer,
    encode_frame,
    encode_ok_reply,
    encode_request,
)

Peer = Callable[[list[int], asyncio.StreamWriter], Awaitable[None]]


class TimedOut(Exception):
    pass


async def _session(peer: Peer, scenario: Callable[[ReplicaChannel, list[str]], Awaitable[Any]]) -> Any:
    """Serve ``peer`` (given the ids of each read's requests) and run ``scenario``."""
    folder = Path(tempfile.mkdtemp(prefix="phc", dir="/tmp"))
    path = str(folder / "s.sock")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = FrameBuffer()
        while data := await reader.read(65536):
            ids = [int(b.split(b",")[0].split(b":")[1]) for b in frames.feed(data)]
            await peer(ids, writer)
        writer.close()

    server = await asyncio.start_unix_server(handle, path=path)
    lost: list[str] = []
    try:
        loop = asyncio.get_running_loop()
        _, channel = await loop.create_unix_connection(
            lambda: ReplicaChannel(lambda t, c: TimedOut(f"{t} {c}"), lost.append), path
        )
        return await scenario(channel, lost)
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


def _call(channel: ReplicaChannel, timeout: float = 5.0) -> Awaitable[Any]:
    return channel.request(lambda i: encode_request(i, "call", {"i": i}), timeout, True)


def test_replies_in_any_order_reach_their_callers_and_unknown_ids_are_dropped() -> None:
    async def peer(ids: list[int], writer: asyncio.StreamWriter) -> None:
        out = [encode_frame(encode_ok_reply(999, b"0"))]  # nobody asked for 999
        out += [encode_frame(encode_ok_reply(i, b"%d" % (i * 10))) for i in reversed(ids)]
        writer.write(b"".join(out))

    async def scenario(channel: ReplicaChannel, lost: list[str]) -> list[bytes]:
        replies = await asyncio.gather(*(_call(channel) for _ in range(20)))
        return [body[head.result_start : -1] for head, body in replies]

    results = asyncio.run(_session(peer, scenario))
    assert results == [b"%d" % (i * 10) for i in range(1, 21)]


def test_a_call_past_its_deadline_gets_the_timeout_error_and_others_still_answer() -> None:
    async def peer(ids: list[int], writer: asyncio.StreamWriter) -> None:
        for i in ids:
            if i != 1:  # request 1 never gets an answer
                writer.write(encode_frame(encode_ok_reply(i, b"true")))

    async def scenario(channel: ReplicaChannel, lost: list[str]) -> tuple[Any, Any]:
        hung = asyncio.ensure_future(_call(channel, timeout=0.2))
        await asyncio.sleep(0)  # the hung call takes id 1
        ok = await _call(channel)
        with pytest.raises(TimedOut, match="0.2 True"):
            await hung
        return ok[0].ok, lost

    ok, lost = asyncio.run(_session(peer, scenario))
    assert ok is True and lost == []


def test_a_garbled_reply_or_a_closed_peer_fails_waiting_calls_and_later_ones() -> None:
    async def garbled(ids: list[int], writer: asyncio.StreamWriter) -> None:
        writer.write(encode_frame(b"[1, 2]"))  # a frame, but not a reply object

    async def hang_up(ids: list[int], writer: asyncio.StreamWriter) -> None:
        writer.write(encode_frame(b'{"id":')[:6])  # half a frame, then gone
        writer.close()

    async def scenario(channel: ReplicaChannel, lost: list[str]) -> tuple[str, str, list[str]]:
        with pytest.raises(ChannelClosed) as first:
            await _call(channel)
        with pytest.raises(ChannelClosed) as later:
            await _call(channel)
        return str(first.value), str(later.value), lost

    for peer, needle in ((garbled, "not an object"), (hang_up, "inside a frame")):
        first, later, lost = asyncio.run(_session(peer, scenario))
        assert needle in first and first == later
        assert lost == [first], "the owner hears of a lost connection exactly once"
