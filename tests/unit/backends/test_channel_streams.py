"""The replica channel's streamed replies, cancels and stuck calls, driven through a fake
transport: requests are read from what the channel writes, replies are fed to
``data_received`` as the replica would send them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from plughost.backends import channel as channel_module
from plughost.backends.channel import ChannelClosed, ReplicaChannel, ReplyStream
from plughost.replica.protocol import (
    END,
    ITEM,
    FrameBuffer,
    encode_end_reply,
    encode_error_reply,
    encode_frame,
    encode_item_reply,
    encode_ok_reply,
    encode_request,
)


class TimedOut(Exception):
    pass


class FakeTransport:
    """Records what the channel writes, as decoded frames."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self._buffer = FrameBuffer()
        self.closing = False

    def write(self, data: bytes) -> None:
        self.frames += [orjson.loads(body) for body in self._buffer.feed(data)]

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def cancels(self) -> list[int]:
        return [f["call"] for f in self.frames if f.get("op") == "cancel"]


class Peer:
    """A channel on a fake transport, with what it told its owner."""

    def __init__(self) -> None:
        self.timeouts: list[tuple[float, bool]] = []
        self.lost: list[str] = []
        self.transport = FakeTransport()
        self.channel = ReplicaChannel(self._timed_out, self.lost.append)
        self.channel.connection_made(self.transport)  # type: ignore[arg-type]

    def _timed_out(self, timeout_s: float, is_call: bool) -> BaseException:
        self.timeouts.append((timeout_s, is_call))
        return TimedOut(f"{timeout_s} {is_call}")

    def reply(self, *bodies: bytes) -> None:
        self.channel.data_received(b"".join(encode_frame(b) for b in bodies))

    def call(self, timeout_s: float = 5.0) -> asyncio.Future[Any]:
        return asyncio.ensure_future(
            self.channel.request(lambda i: encode_request(i, "call", {"i": i}), timeout_s, True)
        )


def run(scenario: Callable[[Peer], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(scenario(Peer()), 10)

    return asyncio.run(main())


async def _turn() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def _item(head_body: tuple[Any, bytes]) -> Any:
    head, body = head_body
    return orjson.loads(body[head.result_start : -1])


def test_a_streamed_reply_comes_as_its_first_item_then_the_rest_in_order() -> None:
    async def scenario(peer: Peer) -> None:
        call = peer.call()
        await _turn()
        assert peer.transport.frames[0]["id"] == 1
        peer.reply(encode_item_reply(1, b'{"n":1}'))
        head, body = await call
        assert (head.ok, head.kind) == (True, ITEM)
        assert isinstance(head.stream, ReplyStream)
        assert _item((head, body)) == {"n": 1}
        assert peer.channel.streams == 1 and peer.channel.busy == 1
        # frames that arrive before anybody reads them wait in the stream, in order
        peer.reply(encode_item_reply(1, b'{"n":2}'), encode_item_reply(1, b'{"n":3}'))
        peer.reply(encode_end_reply(1))
        assert peer.channel.streams == 0, "the end frame closes the stream's count at once"
        frames = [await head.stream.next() for _ in range(3)]
        assert [f[0].kind for f in frames] == [ITEM, ITEM, END]
        assert [_item(f) for f in frames[:2]] == [{"n": 2}, {"n": 3}]
        assert head.stream.finished and peer.channel.busy == 0
        assert peer.transport.cancels() == [], "a stream read to its end is not cancelled"
        peer.reply(encode_item_reply(1, b"4"))  # a late frame for a finished call is dropped

    run(scenario)


def test_an_item_arriving_while_the_reader_waits_wakes_it() -> None:
    async def scenario(peer: Peer) -> None:
        call = peer.call()
        await _turn()
        peer.reply(encode_item_reply(1, b"1"))
        head, _ = await call
        reader = asyncio.ensure_future(head.stream.next())
        await _turn()
        assert not reader.done()
        peer.reply(encode_item_reply(1, b"2"))
        assert _item(await reader) == 2

    run(scenario)


def test_an_error_reply_ends_a_stream() -> None:
    async def scenario(peer: Peer) -> None:
        call = peer.call()
        await _turn()
        peer.reply(encode_item_reply(1, b"1"), encode_error_reply(1, "ValueError", "bad"))
        head, _ = await call
        error_head, body = await head.stream.next()
        assert error_head.ok is False and b"bad" in body
        assert head.stream.finished and peer.channel.streams == 0

    run(scenario)


def test_closing_a_stream_early_cancels_the_call_in_the_replica() -> None:
    async def scenario(peer: Peer) -> None:
        call = peer.call()
        await _turn()
        peer.reply(encode_item_reply(1, b"1"))
        head, _ = await call
        head.stream.close()
        await _turn()
        assert peer.transport.cancels() == [1]
        assert peer.channel.streams == 0 and peer.channel.busy == 0
        head.stream.close()  # twice is once
        await _turn()
        assert peer.transport.cancels() == [1]

    run(scenario)


def test_a_reader_cancelled_while_waiting_cancels_the_call() -> None:
    async def scenario(peer: Peer) -> None:
        call = peer.call()
        await _turn()
        peer.reply(encode_item_reply(1, b"1"))
        head, _ = await call
        reader = asyncio.ensure_future(head.stream.next())
        await _turn()
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        await _turn()
        assert peer.transport.cancels() == [1] and peer.channel.streams == 0

    run(scenario)


def test_a_stream_past_the_channels_timeout_gets_the_timeout_error() -> None:
    async def scenario(peer: Peer) -> None:
        call = peer.call(timeout_s=0.1)
        await _turn()
        peer.reply(encode_item_reply(1, b"1"))
        head, _ = await call
        with pytest.raises(TimedOut, match="0.1 True"):
            await head.stream.next()
        assert peer.channel.streams == 0

    run(scenario)


def test_a_lost_connection_fails_an_open_stream() -> None:
    async def scenario(peer: Peer) -> None:
        call = peer.call()
        await _turn()
        peer.reply(encode_item_reply(1, b"1"))
        head, _ = await call
        peer.channel.connection_lost(None)
        with pytest.raises(ChannelClosed, match="closed"):
            await head.stream.next()
        assert peer.lost == ["connection to the replica closed"]

    run(scenario)


def test_a_cancelled_caller_sends_a_cancel_and_an_answer_in_time_is_enough(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(channel_module, "CANCEL_ACK_S", 0.15)
    monkeypatch.setattr(channel_module, "SWEEP_INTERVAL_S", 0.02)

    async def scenario(peer: Peer) -> None:
        call = peer.call()
        await _turn()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await _turn()
        assert peer.transport.cancels() == [1]
        peer.reply(encode_error_reply(1, "CancelledError", "cancelled by the caller"))
        await asyncio.sleep(0.3)
        assert peer.timeouts == [], "the replica answered the cancel"

    run(scenario)


def test_a_cancel_left_unanswered_is_taken_for_a_hung_replica(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(channel_module, "CANCEL_ACK_S", 0.15)
    monkeypatch.setattr(channel_module, "SWEEP_INTERVAL_S", 0.02)

    async def scenario(peer: Peer) -> None:
        call = peer.call()
        await _turn()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.sleep(0.05)
        assert peer.timeouts == [], "not before CANCEL_ACK_S"
        await asyncio.sleep(0.3)
        assert peer.timeouts == [(0.15, True)]

    run(scenario)


def test_a_call_not_yet_sent_to_a_closed_channel_sends_no_cancel() -> None:
    async def scenario(peer: Peer) -> None:
        call = peer.call()
        await _turn()
        peer.channel.connection_lost(None)
        with pytest.raises(ChannelClosed):
            await call
        assert peer.transport.cancels() == []

    run(scenario)


def test_a_call_stopped_while_its_thread_runs_keeps_the_replica_busy_until_its_end() -> None:
    async def scenario(peer: Peer) -> None:
        calls = [peer.call(), peer.call()]
        await _turn()
        peer.reply(
            encode_error_reply(1, "GatewayTimeoutError", "past 1s", running=True),
            encode_error_reply(2, "GatewayTimeoutError", "past 1s"),
        )
        heads = [(await c)[0] for c in calls]
        assert [h.ok for h in heads] == [False, False]
        assert set(peer.channel.stuck) == {1}, "only the call whose thread still runs is stuck"
        assert peer.channel.busy == 1000
        peer.reply(encode_end_reply(2))  # an end for a call that is not stuck changes nothing
        assert set(peer.channel.stuck) == {1}
        peer.reply(encode_end_reply(1))  # the plugin thread is free again
        assert not peer.channel.stuck and peer.channel.busy == 0

    run(scenario)


def test_plain_replies_still_answer_their_callers_beside_streams() -> None:
    async def scenario(peer: Peer) -> None:
        streamed, plain = peer.call(), peer.call()
        await _turn()
        peer.reply(encode_item_reply(1, b"1"), encode_ok_reply(2, b'"done"'))
        head, body = await plain
        assert (head.kind, body[head.result_start : -1]) == ("result", b'"done"')
        first, _ = await streamed
        assert first.kind == ITEM and peer.channel.streams == 1

    run(scenario)


def test_a_stopped_call_whose_thread_outlives_the_limit_ends_the_replica() -> None:
    async def scenario(peer: Peer) -> None:
        peer.channel._stuck_limit_s = 0.2  # what ReplicaProcess passes: its call timeout
        call = peer.call()
        await _turn()
        peer.reply(encode_error_reply(1, "GatewayTimeoutError", "past 1s", running=True))
        await call
        assert peer.timeouts == []
        await asyncio.sleep(0.5)  # a runaway: no end frame came
        assert peer.timeouts == [(0.2, True)]  # taken for a hung call: the replica is ended
        assert not peer.channel.stuck

    run(scenario)
