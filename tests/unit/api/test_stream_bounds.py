"""Bounds on event streams (plughost.api.stream_bounds): slots in all and per namespace,
keepalives on a quiet stream, a clean end at the lifetime, the slot given back however the
stream ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from plughost.api.stream_bounds import (
    KEEPALIVE,
    LIFETIME_END,
    StreamSlots,
    TooManyStreamsError,
    bounded,
)
from plughost.errors import ServiceUnavailableError, wire_error


def test_slots_refuse_past_the_namespace_share_then_past_the_total() -> None:
    slots = StreamSlots(max_open=3, max_per_namespace=2)
    a1, _ = slots.acquire("a"), slots.acquire("a")
    with pytest.raises(TooManyStreamsError) as per_ns:
        slots.acquire("a")
    status, body = wire_error(per_ns.value)
    assert status == 429 and body["error"]["type"] == "TooManyRequestsError"
    assert per_ns.value.headers["Retry-After"].isdigit()
    slots.acquire("b")
    with pytest.raises(ServiceUnavailableError) as full:
        slots.acquire("c")
    assert wire_error(full.value)[0] == 503 and full.value.headers["Retry-After"].isdigit()
    a1.release()
    a1.release()  # idempotent: one slot back, not two
    assert slots.open == 2 and slots.by_namespace == {"a": 1, "b": 1}
    slots.acquire("c")
    with pytest.raises(ServiceUnavailableError):
        slots.acquire("c")


class Source:
    """An event source that stays quiet after its first events; records its closing."""

    def __init__(self, first: list[bytes]) -> None:
        self.first = first
        self.closed = False

    async def events(self) -> AsyncIterator[bytes]:
        try:
            for event in self.first:
                yield event
            await asyncio.Event().wait()  # idle forever
            yield b"never"
        finally:
            self.closed = True


async def _collect(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [event async for event in stream]


def test_a_quiet_stream_gets_keepalives_and_ends_at_its_lifetime() -> None:
    slots = StreamSlots(10, 10)
    source = Source([b"data: 1\n\n"])
    slot = slots.acquire("ns")
    out = asyncio.run(_collect(bounded(source.events(), slot, keepalive_s=0.05, lifetime_s=0.5)))
    assert out[0] == b"data: 1\n\n" and out[-1] == LIFETIME_END
    assert KEEPALIVE in out[1:-1] and set(out[1:-1]) == {KEEPALIVE}
    assert source.closed and slots.open == 0


def test_a_client_that_goes_away_gives_its_slot_back() -> None:
    slots = StreamSlots(10, 10)
    source = Source([])

    async def client_goes() -> None:
        stream = bounded(source.events(), slots.acquire("ns"), keepalive_s=10, lifetime_s=60)
        reader = asyncio.ensure_future(_collect(stream))
        await asyncio.sleep(0.1)
        assert slots.open == 1
        reader.cancel()  # what the server does when the client disconnects
        with pytest.raises(asyncio.CancelledError):
            await reader

    asyncio.run(client_goes())
    assert source.closed and slots.open == 0 and slots.by_namespace == {}


def test_a_source_that_ends_ends_the_stream() -> None:
    slots = StreamSlots(10, 10)

    async def two() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"

    out = asyncio.run(_collect(bounded(two(), slots.acquire("ns"), 10, 60)))
    assert out == [b"a", b"b"] and slots.open == 0
