"""What the HTTP side of an inference call adds to it: the caller's deadline header, the
client that hangs up, and a streamed answer written as it comes.

- ``X-Request-Timeout: <seconds>`` may lower the release's deadline
  (``serve_config.request_timeout_s``), never raise it (:func:`header_timeout`).
- A client that disconnects while its call runs cancels the call (:func:`unless_gone`): the
  cancellation reaches the replica, as for a deadline.
- A :class:`~plughost.backends.stream.CallStream` is written as NDJSON (one JSON value per
  line), or as server-sent events when the client asks for ``text/event-stream`` (one
  ``data:`` event per item, then ``event: end``). An error mid-stream ends it with a line
  (or an ``event: error``) holding the error body of the contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from starlette.types import Receive, Send

from plughost.backends.stream import CallStream
from plughost.errors import BadRequestError, wire_error

TIMEOUT_HEADER = "x-request-timeout"
NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"
T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its answer was ready; the call was cancelled."""


def header_timeout(value: str | None) -> float | None:
    """The seconds of an ``X-Request-Timeout`` header (None when absent); 400 when it is not
    a positive number."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadRequestError(
            f"X-Request-Timeout must be a positive number of seconds, not {value!r}",
            {"header": "X-Request-Timeout"},
        )
    return seconds


def wants_events(accept: str | None) -> bool:
    """Whether the client asked for server-sent events."""
    return bool(accept) and EVENT_STREAM in str(accept).lower()


async def _disconnect(receive: Receive) -> None:
    """Return once the client has gone (the request body was read already)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


# A call still running this long after it started gets a watcher of its client: a quick call
# (most of them) never pays for the watcher's task, its receive() and its cancellation, about
# 4 of the 25 µs plughost's own code spent on a call (measured in process, concurrency 1).
WATCH_AFTER_S = 0.005


async def unless_gone(
    receive: Receive, call: Awaitable[T], on_gone: Callable[[], Any] | None = None
) -> T:
    """``call``'s result, unless the client disconnects first: then the call is cancelled
    (``on_gone`` runs) and ClientGone raised.

    The call runs in the calling task (no task of its own on the hot path). A call still
    running after WATCH_AFTER_S gets a watcher task that reads ``receive`` and cancels the
    caller when the client goes; a quicker one is answered before any watcher exists."""
    loop = asyncio.get_running_loop()
    caller = asyncio.current_task(loop)
    watch: list[asyncio.Future[None]] = []  # the watcher, once started
    waiting = [True]  # false once the call is over (a late callback then cancels nothing)

    def gone(done: asyncio.Future[None]) -> None:
        if waiting[0] and not done.cancelled() and caller is not None and not caller.done():
            caller.cancel()

    def start_watch() -> None:
        if waiting[0]:
            task = asyncio.ensure_future(_disconnect(receive))
            task.add_done_callback(gone)
            watch.append(task)

    timer = loop.call_later(WATCH_AFTER_S, start_watch)
    try:
        return await call
    except asyncio.CancelledError:
        if watch and watch[0].done() and not watch[0].cancelled() and caller is not None:
            caller.uncancel()  # the cancel was ours: the task goes on to end normally
            if on_gone is not None:
                on_gone()
            raise ClientGone() from None
        raise
    finally:
        waiting[0] = False
        timer.cancel()
        if watch:
            watch[0].remove_done_callback(gone)
            watch[0].cancel()


def stream_headers(events: bool) -> list[tuple[bytes, bytes]]:
    media = EVENT_STREAM if events else NDJSON
    return [
        (b"content-type", media.encode()),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),  # a proxy in front must not hold the items back
    ]


def item_chunk(item: bytes, events: bool) -> bytes:
    return b"data: " + item + b"\n\n" if events else item + b"\n"


def error_chunk(exc: BaseException, events: bool) -> bytes:
    _, body = wire_error(exc)
    line = orjson.dumps(body)
    return b"event: error\ndata: " + line + b"\n\n" if events else line + b"\n"


END_EVENT = b"event: end\ndata: {}\n\n"


async def send_stream(send: Send, receive: Receive, stream: CallStream, events: bool) -> None:
    """Write ``stream`` as the response: each item as soon as it arrives. A client that
    hangs up closes the stream (which cancels the call)."""
    await send({"type": "http.response.start", "status": 200, "headers": stream_headers(events)})
    watch = asyncio.ensure_future(_disconnect(receive))
    reader = asyncio.current_task()
    reading = [True]  # false once the stream is over (a late callback then cancels nothing)

    def gone(done: asyncio.Future[None]) -> None:
        if reading[0] and not done.cancelled() and reader is not None:
            reader.cancel()

    watch.add_done_callback(gone)
    try:
        try:
            async for item in stream:
                await send({"type": "http.response.body", "body": item_chunk(item, events),
                            "more_body": True})
            tail = END_EVENT if events else b""
        except asyncio.CancelledError:
            if watch.done() and not watch.cancelled() and reader is not None:
                reading[0] = False
                reader.uncancel()
                return  # the client went away: nobody to write to
            raise
        except Exception as exc:  # noqa: BLE001 - the error ends the stream, in the stream
            tail = error_chunk(exc, events)
        reading[0] = False
        await send({"type": "http.response.body", "body": tail, "more_body": False})
    finally:
        reading[0] = False
        watch.remove_done_callback(gone)
        watch.cancel()
        with contextlib.suppress(Exception):
            await stream.aclose()


async def stream_chunks(stream: CallStream, events: bool) -> Any:
    """The response body of ``stream`` as chunks (for a StreamingResponse)."""
    try:
        async for item in stream:
            yield item_chunk(item, events)
        if events:
            yield END_EVENT
    except Exception as exc:  # noqa: BLE001 - the error ends the stream, in the stream
        yield error_chunk(exc, events)
    finally:
        await stream.aclose()
