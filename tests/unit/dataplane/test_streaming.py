"""The HTTP side of an inference call (plughost.dataplane.streaming): the deadline header, a
client that hangs up, and a streamed answer written as NDJSON or server-sent events. Logic
only, against fake ASGI receive/send callables."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from plughost.backends.stream import CallStream, ListStream
from plughost.dataplane.inference import _within
from plughost.dataplane.streaming import (
    END_EVENT,
    WATCH_AFTER_S,
    ClientGone,
    error_chunk,
    header_timeout,
    item_chunk,
    send_stream,
    unless_gone,
    wants_events,
)
from plughost.errors import BadRequestError, DeadlineExceeded


@pytest.mark.parametrize(("value", "seconds"), [("2.5", 2.5), (" 10 ", 10.0), ("0.001", 0.001)])
def test_a_positive_header_is_its_seconds(value: str, seconds: float) -> None:
    assert header_timeout(value) == seconds


@pytest.mark.parametrize("value", [None, "", "   "])
def test_an_absent_or_blank_header_sets_no_deadline(value: str | None) -> None:
    assert header_timeout(value) is None


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf", "-inf", "1e999", "0x10"])
def test_a_header_that_is_not_a_positive_number_is_a_bad_request(value: str) -> None:
    with pytest.raises(BadRequestError, match="X-Request-Timeout") as caught:
        header_timeout(value)
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    ("accept", "events"),
    [
        ("text/event-stream", True),
        ("Text/Event-Stream;q=0.9, application/json", True),
        ("application/json", False),
        ("*/*", False),
        ("", False),
        (None, False),
    ],
)
def test_events_only_when_the_client_asks_for_them(accept: str | None, events: bool) -> None:
    assert wants_events(accept) is events


def test_an_item_is_an_ndjson_line_or_a_data_event() -> None:
    assert item_chunk(b'{"a":1}', events=False) == b'{"a":1}\n'
    assert item_chunk(b'{"a":1}', events=True) == b'data: {"a":1}\n\n'


def test_an_error_is_the_contracts_body_as_a_line_or_an_error_event() -> None:
    exc = DeadlineExceeded("past 2s")
    line = error_chunk(exc, events=False)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    body = orjson.loads(line)
    assert body["success"] is False and body["status"] == 504
    assert body["error"]["message"] == "past 2s"
    event = error_chunk(exc, events=True)
    assert event.startswith(b"event: error\ndata: ") and event.endswith(b"\n\n")
    assert orjson.loads(event[len(b"event: error\ndata: ") : -2]) == body


# -- a client that hangs up ------------------------------------------------------------------


def _receive_after(delay: float, messages: list[dict[str, Any]] | None = None) -> Any:
    """An ASGI receive giving ``messages`` first, then ``http.disconnect`` after ``delay``."""
    queue = list(messages or [])

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(delay)
        return {"type": "http.disconnect"}

    return receive


def test_a_disconnect_cancels_the_call_and_raises_client_gone() -> None:
    async def main() -> list[str]:
        seen: list[str] = []

        async def call() -> str:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                seen.append("call cancelled")
                raise
            return "late"

        receive = _receive_after(0.05, [{"type": "http.request", "body": b"", "more_body": False}])
        with pytest.raises(ClientGone):
            await asyncio.wait_for(
                unless_gone(receive, call(), on_gone=lambda: seen.append("on_gone")), 5
            )
        return seen

    seen = asyncio.run(main())
    assert seen == ["call cancelled", "on_gone"]


def test_a_call_that_ends_first_gives_its_result_and_stops_watching() -> None:
    async def main() -> tuple[str, bool]:
        waiting = asyncio.Event()
        cancelled: list[bool] = []

        async def receive() -> dict[str, Any]:
            waiting.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise
            return {"type": "http.disconnect"}

        async def call() -> str:
            await waiting.wait()
            return "answer"

        result = await unless_gone(receive, call())
        await asyncio.sleep(0)
        return result, bool(cancelled)

    assert asyncio.run(main()) == ("answer", True)


def test_a_cancel_from_elsewhere_is_not_taken_for_a_client_that_left() -> None:
    async def main() -> None:
        gone: list[bool] = []
        runner = asyncio.ensure_future(
            unless_gone(_receive_after(30), asyncio.sleep(30), on_gone=lambda: gone.append(True))
        )
        await asyncio.sleep(0.01)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        assert gone == []

    asyncio.run(main())


def test_a_quick_call_never_reads_from_the_client() -> None:
    """A call answered within WATCH_AFTER_S starts no watcher: ``receive`` is never called
    (the watcher's task and its cancellation are what the quick path saves)."""

    async def main() -> tuple[str, int]:
        reads: list[bool] = []

        async def receive() -> dict[str, Any]:
            reads.append(True)
            await asyncio.sleep(30)
            return {"type": "http.disconnect"}

        async def call() -> str:
            await asyncio.sleep(0)
            return "answer"

        result = await unless_gone(receive, call())
        await asyncio.sleep(WATCH_AFTER_S * 4)  # a leftover timer would start a watcher now
        return result, len(reads)

    assert asyncio.run(main()) == ("answer", 0)


def test_a_slow_call_watches_its_client_once_it_has_run_a_while() -> None:
    async def main() -> list[float]:
        reads: list[float] = []
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def receive() -> dict[str, Any]:
            reads.append(loop.time() - started)
            await asyncio.sleep(30)
            return {"type": "http.disconnect"}

        await unless_gone(receive, asyncio.sleep(WATCH_AFTER_S * 6))
        return reads

    reads = asyncio.run(main())
    assert len(reads) == 1 and reads[0] >= WATCH_AFTER_S * 0.9


# -- the call's deadline (plughost.dataplane.inference._within) ---------------------------------


def test_a_call_past_its_deadline_is_cancelled_and_times_out() -> None:
    async def main() -> list[str]:
        seen: list[str] = []

        async def call() -> str:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                seen.append("call cancelled")
                raise
            return "late"

        with pytest.raises(TimeoutError):
            await _within(0.02, call())
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0  # our cancel was withdrawn
        await asyncio.sleep(0)  # the task goes on: no cancel is left pending
        seen.append("went on")
        return seen

    assert asyncio.run(main()) == ["call cancelled", "went on"]


def test_a_call_within_its_deadline_gives_its_result() -> None:
    async def main() -> str:
        async def call() -> str:
            await asyncio.sleep(0.001)
            return "answer"

        result = await _within(5, call())
        await asyncio.sleep(0.01)
        return result

    assert asyncio.run(main()) == "answer"


def test_a_cancel_from_elsewhere_is_not_a_timeout() -> None:
    async def main() -> None:
        runner = asyncio.ensure_future(_within(5, asyncio.sleep(30)))
        await asyncio.sleep(0.01)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner

    asyncio.run(main())


# -- a streamed answer -------------------------------------------------------------------------


class Sent:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.messages[1:]]


class FailingStream(CallStream):
    """Gives its items, then raises ``error``; records ``aclose``."""

    def __init__(self, items: list[bytes], error: BaseException | None = None,
                 hang: bool = False) -> None:
        self.items = list(items)
        self.error = error
        self.hang = hang
        self.closed = False

    async def next_item(self) -> bytes | None:
        if self.items:
            return self.items.pop(0)
        if self.hang:
            await asyncio.sleep(30)
        if self.error is not None:
            raise self.error
        return None

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.parametrize("events", [False, True])
def test_a_stream_is_written_item_by_item_then_ended(events: bool) -> None:
    sent = Sent()
    stream = ListStream([b'{"n":1}', b'{"n":2}'])
    asyncio.run(send_stream(sent, _receive_after(30), stream, events))
    assert sent.messages[0]["status"] == 200
    media = b"text/event-stream" if events else b"application/x-ndjson"
    assert sent.headers[b"content-type"] == media
    assert sent.headers[b"x-accel-buffering"] == b"no"
    if events:
        assert sent.bodies == [b'data: {"n":1}\n\n', b'data: {"n":2}\n\n', END_EVENT]
    else:
        assert sent.bodies == [b'{"n":1}\n', b'{"n":2}\n', b""]
    assert [m["more_body"] for m in sent.messages[1:]] == [True, True, False]


@pytest.mark.parametrize("events", [False, True])
def test_an_error_mid_stream_ends_it_with_the_error(events: bool) -> None:
    sent = Sent()
    stream = FailingStream([b"1"], DeadlineExceeded("past 1s"))
    asyncio.run(send_stream(sent, _receive_after(30), stream, events))
    assert sent.bodies[0] == item_chunk(b"1", events)
    assert sent.bodies[-1] == error_chunk(DeadlineExceeded("past 1s"), events)
    assert sent.messages[-1]["more_body"] is False
    assert stream.closed


def test_a_client_that_leaves_mid_stream_closes_the_stream_and_nothing_more_is_sent() -> None:
    sent = Sent()
    stream = FailingStream([b"1"], hang=True)

    async def main() -> None:
        await asyncio.wait_for(send_stream(sent, _receive_after(0.05), stream, False), 5)

    asyncio.run(main())
    assert sent.bodies == [b"1\n"]
    assert stream.closed, "closing the stream is what cancels the call in the replica"
