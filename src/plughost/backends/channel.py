"""The client end of a replica's socket, as an asyncio protocol.

Requests are framed and queued; everything queued in one turn of the event loop leaves in
one write, so at high concurrency many requests share a system call. Replies are split out
of ``data_received`` and handed to their waiting callers by id, with no task per reply.
Deadlines are checked by one timer per connection while calls are waiting, instead of a
timer per call. Profiles of the request path showed the stream reader, a write per request
and per-call timeout scopes as a large part of the server's own cost per request.

The replica may also send requests of its own: container calls of plugin code
(:mod:`plughost.domain.container`), in ``cid`` frames. With a ``container`` handler (bound to
the release's scope by whoever opens the channel) each is answered in a task of its own;
without one they get an error reply.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from plughost.domain.container import UNAVAILABLE, error_reply
from plughost.replica.protocol import (
    CONTAINER_PREFIX,
    FrameBuffer,
    FrameError,
    FrameOutbox,
    ReplyHead,
    decode_container_frame,
    encode_container_frame,
    split_reply,
)

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 0.05  # how often waiting calls are checked against their deadlines
MAX_CONTAINER_CALLS = 256  # container calls of one connection in flight; more are refused
ContainerHandler = Callable[[Any], Awaitable[dict[str, Any]]]


@dataclass(slots=True)
class _Waiting:
    future: asyncio.Future[tuple[ReplyHead, bytes]]
    deadline: float
    timeout_s: float
    is_call: bool


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
    ) -> None:
        self._timed_out = timed_out
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
            waiting = self._waiting.pop(head.request_id, None) if head.request_id is not None else None
            if waiting is None:
                logger.debug("reply for unknown request %s", head.request_id)
            elif not waiting.future.done():
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
        finally:
            self._waiting.pop(request_id, None)

    async def _wait_drained(self) -> None:
        if self._drained is None:
            self._drained = self._loop.create_future()
        await asyncio.shield(self._drained)

    def _sweep(self) -> None:
        self._sweep_handle = None
        now = self._loop.time()
        for waiting in list(self._waiting.values()):
            if waiting.deadline <= now and not waiting.future.done():
                waiting.future.set_exception(self._timed_out(waiting.timeout_s, waiting.is_call))
        if self._waiting and self.closed_reason is None:
            self._sweep_handle = self._loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    # -- closing ----------------------------------------------------------------------------
    def fail_all(self, reason: str) -> None:
        """Fail every waiting request with ChannelClosed(reason); later requests fail too."""
        if self.closed_reason is None:
            self.closed_reason = reason
        for waiting in self._waiting.values():
            if not waiting.future.done():
                waiting.future.set_exception(ChannelClosed(self.closed_reason))
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
