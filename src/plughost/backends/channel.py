"""The client end of a replica's socket, as an asyncio protocol.

Requests are framed and queued; everything queued in one turn of the event loop leaves in
one write, so at high concurrency many requests share a system call. Replies are split out
of ``data_received`` and handed to their waiting callers by id, with no task per reply.
Deadlines are checked by one timer per connection while calls are waiting, instead of a
timer per call. Profiles of the request path showed the stream reader, a write per request
and per-call timeout scopes as a large part of the server's own cost per request.

A call the caller gives up on (its task is cancelled: a deadline, a client that hung up) is
cancelled in the replica with a ``cancel`` request; the replica must answer it (the call's own
error reply) within CANCEL_ACK_S, or it is taken for hung (its loop blocked) and ended like a
call past the channel's own timeout. A reply streamed in items (:mod:`plughost.replica.
protocol`) is handed over as its first item with a :class:`ReplyStream` in ``head.stream``.
A call the replica stopped while its plain handler still runs leaves the replica busy
(:attr:`ReplicaChannel.busy`) until the replica says the thread is free; one that still runs
``stuck_limit_s`` later (a runaway loop burning a CPU) ends the replica like a hung call.

The replica may also send requests of its own: container calls of plugin code
(:mod:`plughost.domain.container`), in ``cid`` frames. With a ``container`` handler (bound to
the release's scope by whoever opens the channel) each is answered in a task of its own;
without one they get an error reply.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from plughost.domain.container import UNAVAILABLE, error_reply
from plughost.replica.protocol import (
    CONTAINER_PREFIX,
    END,
    ITEM,
    FrameBuffer,
    FrameError,
    FrameOutbox,
    ReplyHead,
    decode_container_frame,
    encode_cancel_request,
    encode_container_frame,
    error_running,
    split_reply,
)

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 0.05  # how often waiting calls are checked against their deadlines
CANCEL_ACK_S = 5.0  # a replica that does not answer a cancel in this long is hung
MAX_CONTAINER_CALLS = 256  # container calls of one connection in flight; more are refused
ContainerHandler = Callable[[Any], Awaitable[dict[str, Any]]]


@dataclass(slots=True)
class _Waiting:
    future: asyncio.Future[tuple[ReplyHead, bytes]]
    deadline: float
    timeout_s: float
    is_call: bool
    stream: ReplyStream | None = None


class ReplyStream:
    """The frames of a streamed reply after its first item, in order: items, then an end
    frame or an error reply (:meth:`next` gives each as ``(head, body)``). Closing it before
    the end cancels the call in the replica."""

    def __init__(self, channel: ReplicaChannel, request_id: int) -> None:
        self._channel = channel
        self.request_id = request_id
        self._frames: deque[tuple[ReplyHead, bytes] | BaseException] = deque()
        self._ready: asyncio.Future[None] | None = None
        self.finished = False

    def put(self, frame: tuple[ReplyHead, bytes] | BaseException) -> None:
        self._frames.append(frame)
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    async def next(self) -> tuple[ReplyHead, bytes]:
        """The next frame (an ITEM, the END, or an error reply); raises ChannelClosed or
        the timeout error when the connection ends or the call runs past the channel's own
        timeout first."""
        while not self._frames:
            self._ready = self._channel._loop.create_future()
            try:
                await self._ready
            except asyncio.CancelledError:
                self.close()
                raise
            finally:
                self._ready = None
        frame = self._frames.popleft()
        if isinstance(frame, BaseException):
            self.finished = True
            raise frame
        if frame[0].kind != ITEM:
            self.finished = True
            self._channel._stream_done(self.request_id)
        return frame

    def close(self) -> None:
        """Stop waiting for the rest; cancels the call in the replica if it still streams."""
        if not self.finished:
            self.finished = True
            self._channel._stream_done(self.request_id, cancel=True)


class ChannelClosed(Exception):
    """The connection is gone; ``str(exc)`` tells why."""


class ReplicaChannel(asyncio.Protocol):
    """Pipelined requests over one connection; replies may arrive in any order.

    ``timed_out(timeout_s, is_call)`` builds the exception for a call past its deadline (and
    may kill the replica); ``lost(reason)`` is told once when the connection ends.
    """

    def __init__(
        self,
        timed_out: Callable[[float, bool], BaseException],
        lost: Callable[[str], None],
        container: ContainerHandler | None = None,
        stuck_limit_s: float | None = None,
    ) -> None:
        self._timed_out = timed_out
        self._stuck_limit_s = stuck_limit_s
        self._lost = lost
        self.container = container  # answers the replica's container calls (None: refused)
        self._container_tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._frames = FrameBuffer()
        self._waiting: dict[int, _Waiting] = {}
        self._ids = itertools.count(1)
        self._outbox = FrameOutbox()
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self.closed_reason: str | None = None
        self._acks: dict[int, float] = {}  # cancelled calls: by when the replica must answer
        # stopped calls whose plain handler still runs: by when it must have returned
        self.stuck: dict[int, float] = {}
        self.streams = 0  # streamed replies under way

    @property
    def busy(self) -> int:
        """How much routing should avoid this replica beyond its calls in flight: its open
        streams, and a large weight per plugin thread still held by a stopped call."""
        return self.streams + 1000 * len(self.stuck)

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self._transport = cast(asyncio.Transport, transport)
        self._outbox.attach(self._transport)

    def data_received(self, data: bytes) -> None:
        try:
            bodies = self._frames.feed(data)
        except FrameError as exc:
            self._close(f"connection to the replica failed: {exc}")
            return
        for body in bodies:
            if body.startswith(CONTAINER_PREFIX):
                self._container_call(body)
                continue
            try:
                head = split_reply(body)
            except FrameError as exc:
                self._close(f"connection to the replica failed: {exc}")
                return
            request_id = head.request_id
            if request_id is None:
                logger.debug("reply without a request id")
                continue
            if self._acks and request_id in self._acks:
                del self._acks[request_id]
            if not head.ok:
                if error_running(body):
                    self._note_stuck(request_id)
            elif head.kind == END and request_id in self.stuck:
                del self.stuck[request_id]  # the plugin thread is free again
            if head.kind == ITEM:
                waiting = self._waiting.get(request_id)
            else:
                waiting = self._waiting.pop(request_id, None)
            if waiting is None:
                logger.debug("reply for unknown request %s", request_id)
            elif waiting.stream is not None:
                if head.kind != ITEM:  # the stream's last frame: it was popped above
                    self.streams -= 1
                waiting.stream.put((head, body))
            elif waiting.future.done():
                pass
            elif head.kind == ITEM:  # the first item: the rest comes through the stream
                waiting.stream = ReplyStream(self, request_id)
                self.streams += 1
                waiting.future.set_result((dataclasses.replace(head, stream=waiting.stream), body))
            else:
                waiting.future.set_result((head, body))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            reason = f"connection to the replica failed: {exc}"
        elif self._frames.partial:
            reason = "connection to the replica failed: stream ended inside a frame"
        else:
            reason = "connection to the replica closed"
        self._close(reason)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    # -- the replica's container calls ----------------------------------------------------
    def _container_call(self, body: bytes) -> None:
        try:
            cid, request = decode_container_frame(body, "request")
        except FrameError as exc:
            logger.warning("dropping a malformed container request from a replica: %s", exc)
            return
        handler = self.container
        if handler is None or len(self._container_tasks) >= MAX_CONTAINER_CALLS:
            why = (
                "this connection does not take container calls"
                if handler is None
                else f"more than {MAX_CONTAINER_CALLS} container calls in flight"
            )
            self._container_reply(cid, error_reply(UNAVAILABLE, why))
            return
        task = self._loop.create_task(self._answer_container(cid, handler, request))
        self._container_tasks.add(task)
        task.add_done_callback(self._container_tasks.discard)

    async def _answer_container(self, cid: int, handler: ContainerHandler, request: Any) -> None:
        try:
            reply = await handler(request)
        except Exception as exc:
            logger.exception("container call failed")
            reply = error_reply(UNAVAILABLE, f"the server failed the call: {type(exc).__name__}")
        self._container_reply(cid, reply)

    def _container_reply(self, cid: int, reply: dict[str, Any]) -> None:
        if self.closed_reason is not None or self._transport is None:
            return
        try:
            self._outbox.put(encode_container_frame(cid, "reply", reply))
        except (FrameError, TypeError) as exc:
            self._outbox.put(encode_container_frame(cid, "reply", error_reply(UNAVAILABLE, str(exc))))

    # -- requests ---------------------------------------------------------------------------
    async def request(
        self, body_for: Callable[[int], bytes], timeout_s: float, is_call: bool
    ) -> tuple[ReplyHead, bytes]:
        """Send one request and wait for its reply (head and whole body).

        Raises ChannelClosed when the connection is or goes away, and what ``timed_out``
        builds when no reply arrives within ``timeout_s``.
        """
        if self.closed_reason is not None or self._transport is None:
            raise ChannelClosed(self.closed_reason or "replica is not connected")
        request_id = next(self._ids)
        self._outbox.put(body_for(request_id))
        future: asyncio.Future[tuple[ReplyHead, bytes]] = self._loop.create_future()
        self._waiting[request_id] = _Waiting(
            future, self._loop.time() + timeout_s, timeout_s, is_call
        )
        if self._sweep_handle is None:
            self._sweep_handle = self._loop.call_later(SWEEP_INTERVAL_S, self._sweep)
        try:
            if self._paused:
                await self._wait_drained()
            return await future
        except asyncio.CancelledError:
            # the await cancelled the future itself; one holding a reply already arrived in
            # the same loop turn (a stream's first item: close that stream)
            if is_call and (not future.done() or future.cancelled()):
                self._cancel(request_id)
            elif is_call and future.exception() is None and future.result()[0].stream is not None:
                future.result()[0].stream.close()
            raise
        finally:
            waiting = self._waiting.get(request_id)
            if waiting is not None and waiting.stream is None:
                del self._waiting[request_id]

    def _note_stuck(self, request_id: int) -> None:
        limit = self._stuck_limit_s
        self.stuck[request_id] = self._loop.time() + (limit if limit is not None else float("inf"))
        if limit is not None and self._sweep_handle is None:
            self._sweep_handle = self._loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    def _cancel(self, request_id: int) -> None:
        """Ask the replica to cancel a call; it must answer within CANCEL_ACK_S."""
        if self.closed_reason is not None or self._transport is None:
            return
        self._outbox.put(encode_cancel_request(request_id))
        self._acks[request_id] = self._loop.time() + CANCEL_ACK_S
        if self._sweep_handle is None:
            self._sweep_handle = self._loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    def _stream_done(self, request_id: int, cancel: bool = False) -> None:
        """A streamed reply ended (or its reader stopped: ``cancel`` it in the replica)."""
        waiting = self._waiting.pop(request_id, None)
        if waiting is not None and waiting.stream is not None:
            self.streams -= 1
            if cancel:
                self._cancel(request_id)

    async def _wait_drained(self) -> None:
        if self._drained is None:
            self._drained = self._loop.create_future()
        await asyncio.shield(self._drained)

    def _sweep(self) -> None:
        self._sweep_handle = None
        now = self._loop.time()
        for request_id, waiting in list(self._waiting.items()):
            if waiting.deadline > now:
                continue
            if waiting.stream is not None:
                self._waiting.pop(request_id, None)
                self.streams -= 1
                waiting.stream.put(self._timed_out(waiting.timeout_s, waiting.is_call))
            elif not waiting.future.done():
                waiting.future.set_exception(self._timed_out(waiting.timeout_s, waiting.is_call))
        for request_id, due in list(self._acks.items()):
            if due <= now:  # no answer to a cancel: the replica's loop is stuck
                del self._acks[request_id]
                logger.warning("replica did not answer the cancel of call %d", request_id)
                self._timed_out(CANCEL_ACK_S, True)
        for request_id, due in list(self.stuck.items()):
            if due <= now:  # a stopped call's thread still runs: a runaway
                del self.stuck[request_id]
                logger.warning("call %d still runs %g s after it was stopped", request_id,
                               self._stuck_limit_s or 0)
                self._timed_out(self._stuck_limit_s or 0.0, True)
        stuck_due = self._stuck_limit_s is not None and bool(self.stuck)
        if (self._waiting or self._acks or stuck_due) and self.closed_reason is None:
            self._sweep_handle = self._loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    # -- closing ----------------------------------------------------------------------------
    def fail_all(self, reason: str) -> None:
        """Fail every waiting request with ChannelClosed(reason); later requests fail too."""
        if self.closed_reason is None:
            self.closed_reason = reason
        for waiting in self._waiting.values():
            if waiting.stream is not None:
                waiting.stream.put(ChannelClosed(self.closed_reason))
            elif not waiting.future.done():
                waiting.future.set_exception(ChannelClosed(self.closed_reason))
        self._acks.clear()
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ChannelClosed(self.closed_reason))

    def close(self) -> None:
        """Close the transport (no wait)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def _close(self, reason: str) -> None:
        first = self.closed_reason is None
        self.fail_all(reason)
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        for task in list(self._container_tasks):
            task.cancel()
        self._outbox.discard()
        self.close()
        if first:
            self._lost(reason)
