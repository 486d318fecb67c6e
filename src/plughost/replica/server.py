"""The replica's Unix-socket server: framed requests in, framed replies out.

Requests on one connection are answered concurrently and replies may leave out of order;
the client matches them by id. A plugin exception becomes an error reply and never stops
the server. On stop the listener closes, connections stop reading, and in-flight requests
get up to the drain timeout to finish and be answered.

Connections are asyncio protocols: frames are split out of ``data_received``, and the replies
of one loop turn leave in one write. A quick plain call (see
:class:`~plughost.replica.invoke.ServiceInvoker`) is answered right there, with no task.

Every other call runs in a task of its connection, under the call's deadline (its
``timeout``): past it, or on a ``cancel`` request, the task is cancelled (an async handler
gets CancelledError; a plain call not yet started in the plugin thread never runs; one that
runs cannot be stopped, so the error reply says it still runs and an ``end`` frame follows
when the thread is free). A handler that returns a generator streams its items
(:mod:`plughost.replica.protocol`). With a :class:`~plughost.replica.batching.Batcher`,
calls are answered in micro-batches.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
from pathlib import Path
from typing import Any, cast

from plughost.replica.auth import HELLO_OP, replica_proof, token_ok
from plughost.replica.batching import Batcher
from plughost.replica.calls import (
    VALIDATION_ERROR,
    CallRunner,
    call_arguments,
    encode_reply,
    failure_reply,
    refused,
    streams,
)
from plughost.replica.container_link import ContainerLink
from plughost.replica.invoke import ServiceInvoker
from plughost.replica.protocol import (
    CANCEL_OP,
    CANCELLED_ERROR,
    CONTAINER_OFFER_OP,
    CONTAINER_PREFIX,
    FrameBuffer,
    FrameError,
    FrameOutbox,
    decode_object,
    encode_ok_reply,
    recover_request_id,
)

logger = logging.getLogger(__name__)

PROTOCOL_ERROR = "ProtocolError"
CLOSE_WAIT_S = 2.0  # how long a stopping server waits for its connections to close


_refused = refused


class _Connection(asyncio.Protocol):
    """One client connection: frames in, replies out (batched per loop turn), and the
    requests still being answered."""

    def __init__(self, server: ReplicaServer) -> None:
        self._server = server
        self._frames = FrameBuffer()
        self._outbox = FrameOutbox()
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Future[None]] = set()
        self.calls: dict[int, asyncio.Future[None]] = {}  # running calls by id (to cancel)
        self.reading = True
        self.closed = asyncio.get_running_loop().create_future()
        self._closer: asyncio.Future[None] | None = None
        self.authed = False  # the hello has been answered (see plughost.replica.auth)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._outbox.attach(self.transport)
        self._server.opened(self)

    def data_received(self, data: bytes) -> None:
        if not self.reading:
            return
        try:
            bodies = self._frames.feed(data)
        except FrameError as exc:
            logger.warning("dropping connection: %s", exc)
            self.stop_reading()
            return
        for body in bodies:
            self._server.handle(self, body)

    def eof_received(self) -> bool:
        """The peer will send no more: answer what is in flight, then close."""
        self.stop_reading()
        return True  # keep the write side open for those replies

    def connection_lost(self, exc: Exception | None) -> None:
        self.reading = False
        self._outbox.discard()
        self._server.closed(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def stop_reading(self) -> None:
        """Take no more requests; close once the ones in flight are answered."""
        if not self.reading:
            return
        self.reading = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        # kept: the loop holds only a weak reference to a task
        self._closer = asyncio.ensure_future(self._close_when_answered())

    async def _close_when_answered(self) -> None:
        if self.tasks:
            await asyncio.wait(set(self.tasks))
        self.close()

    def send(self, body: bytes) -> None:
        """Queue one reply frame; everything queued in this loop turn leaves in one write."""
        if self.transport is None or self.transport.is_closing():
            return
        self._outbox.put(body)

    def track(self, task: asyncio.Future[None]) -> None:
        """Keep ``task`` (answering a request of this connection) until it is done."""
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def start_call(self, request_id: int, task: asyncio.Future[None]) -> None:
        """Keep a call's task, findable by the call's id until it is done."""
        self.track(task)
        self.calls[request_id] = task

        def done(_task: asyncio.Future[None]) -> None:
            if self.calls.get(request_id) is task:
                del self.calls[request_id]

        task.add_done_callback(done)

    def close(self) -> None:
        """Send what is queued and close (the transport flushes before it closes)."""
        self._outbox.flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class ReplicaServer:
    """Serves one plugin over a Unix socket until asked to stop."""

    def __init__(
        self,
        invoker: ServiceInvoker,
        socket_path: Path,
        drain_timeout_s: float,
        listen_fd: int | None = None,
        secret: str | None = None,
        container: ContainerLink | None = None,
        batcher: Batcher | None = None,
        request_timeout_s: float | None = None,
    ):
        """``container``: where plugin code's container calls go out (offered connections)
        and their replies come back; None refuses the server's offer. ``batcher``: calls are
        answered in micro-batches through it. ``request_timeout_s``: the release's deadline,
        for calls that bring none or a longer one."""
        self._invoker = invoker
        self._batcher = batcher
        self._runner = CallRunner(invoker, batcher, request_timeout_s)
        self._container = container
        self._socket_path = socket_path
        self._listen_fd = listen_fd
        self._drain_timeout_s = drain_timeout_s
        self._secret = secret  # required hello on every connection when set
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()
        self._stop_requested = asyncio.Event()
        self._authed = 0
        self.idle_since: float | None = asyncio.get_running_loop().time()

    # -- who is connected (the orphan timeout reads it) ---------------------------------------
    def opened(self, conn: _Connection) -> None:
        """A connection came: counted; without a secret it needs no hello."""
        self._connections.add(conn)
        if self._secret is None:
            self._authenticated(conn)

    def closed(self, conn: _Connection) -> None:
        """A connection ended: forgotten; the last authenticated one starts the idle time."""
        self._connections.discard(conn)
        if self._container is not None:
            self._container.closed(conn)
        if conn.authed:
            self._gone(conn)

    def _authenticated(self, conn: _Connection) -> None:
        conn.authed = True
        self._authed += 1
        self.idle_since = None

    def _gone(self, conn: _Connection) -> None:
        self._authed -= 1
        if self._authed <= 0:
            self.idle_since = asyncio.get_running_loop().time()

    def _hello(self, conn: _Connection, request_id: int, request: dict[str, Any]) -> None:
        """Answer the handshake with the proof, or refuse and close the connection."""
        secret = self._secret
        nonce = request.get("nonce")
        if secret is None or not token_ok(secret, nonce, request.get("token")):
            logger.warning("refused a connection without the replica's secret")
            conn.send(_refused(request_id, PROTOCOL_ERROR, "hello refused"))
            conn.stop_reading()
            return
        if not conn.authed:
            self._authenticated(conn)
        proof = replica_proof(secret, str(nonce))
        result = b'{"proof":"%s","pid":%d}' % (proof.encode(), os.getpid())
        conn.send(encode_ok_reply(request_id, result))

    async def start(self) -> None:
        """Bind and listen, replacing a stale socket file; only the owner may connect.

        With ``listen_fd`` the socket was bound by the parent (a sandboxed replica cannot see
        the socket's folder) and is served as it is.
        """
        loop = asyncio.get_running_loop()
        if self._listen_fd is not None:
            sock = socket.socket(fileno=self._listen_fd)
            self._server = await loop.create_unix_server(lambda: _Connection(self), sock=sock)
            return
        if self._socket_path.exists() or self._socket_path.is_symlink():
            self._socket_path.unlink()
        self._server = await loop.create_unix_server(
            lambda: _Connection(self), path=str(self._socket_path)
        )
        os.chmod(self._socket_path, 0o600)

    def request_stop(self) -> None:
        """Ask :meth:`serve_until_stopped` to drain and return; safe to call repeatedly."""
        self._stop_requested.set()

    async def serve_until_stopped(self) -> None:
        """Serve until :meth:`request_stop`, then drain in-flight requests and close."""
        await self._stop_requested.wait()
        if self._server is not None:
            self._server.close()
        self._remove_socket_file()
        for conn in list(self._connections):
            conn.stop_reading()
        pending = {task for conn in self._connections for task in conn.tasks}
        if pending:
            _, unfinished = await asyncio.wait(pending, timeout=self._drain_timeout_s)
            if unfinished:
                logger.warning("%d call(s) still running after the drain timeout", len(unfinished))
            for task in unfinished:
                task.cancel()
        connections = list(self._connections)
        for conn in connections:
            conn.close()
        if connections:
            await asyncio.wait([conn.closed for conn in connections], timeout=CLOSE_WAIT_S)
        self._invoker.shutdown()

    def _remove_socket_file(self) -> None:
        """Remove the socket file so no new client can connect."""
        try:
            self._socket_path.unlink()
        except FileNotFoundError:
            pass

    def handle(self, conn: _Connection, body: bytes) -> None:
        """Answer one request frame: at once when no waiting is needed, else in a task."""
        if body.startswith(CONTAINER_PREFIX) and conn.authed and self._container is not None:
            self._container.deliver(conn, body)  # the reply to a container call
            return
        try:
            request = decode_object(body)
        except FrameError as exc:
            conn.send(_refused(recover_request_id(body), PROTOCOL_ERROR, str(exc)))
            return
        request_id = request.get("id")
        if not isinstance(request_id, int) or isinstance(request_id, bool):
            conn.send(_refused(None, PROTOCOL_ERROR, "request has no integer id"))
            return
        op = request.get("op")
        if op == HELLO_OP or not conn.authed:
            if op != HELLO_OP:
                conn.send(_refused(request_id, PROTOCOL_ERROR, "say hello first"))
                conn.stop_reading()
                return
            self._hello(conn, request_id, request)
        elif op == "call":
            if self._batcher is None and self._invoker.inline_ready:
                self._call_now(conn, request_id, request)
            else:
                conn.start_call(request_id, asyncio.ensure_future(
                    self._runner.run(conn, request_id, request)))
        elif op == "health":
            conn.track(asyncio.ensure_future(self._respond_health(conn, request_id)))
        elif op == CANCEL_OP:
            self._cancel(conn, request.get("call"))
        elif op == CONTAINER_OFFER_OP and self._container is not None:
            self._container.offered(conn)
            conn.send(encode_ok_reply(request_id, b"true"))
        else:
            conn.send(_refused(request_id, PROTOCOL_ERROR, f"unknown op {op!r}"))

    async def _respond_health(self, conn: _Connection, request_id: int) -> None:
        conn.send(await self._answer_health(request_id))

    def _cancel(self, conn: _Connection, call_id: Any) -> None:
        """Cancel a running call of this connection (its task replies); a call that is not
        running (answered already) is answered once more, so the client hears back."""
        task = conn.calls.get(call_id) if isinstance(call_id, int) else None
        if task is not None and not task.done():  # a done one is forgotten a turn later
            task.cancel()

            def unstarted(done: asyncio.Future[None]) -> None:
                # a task cancelled before its first step never ran its reply: answer here
                if done.cancelled():
                    conn.send(_refused(call_id, CANCELLED_ERROR, "the call was cancelled"))

            task.add_done_callback(unstarted)
        elif isinstance(call_id, int):
            conn.send(_refused(call_id, CANCELLED_ERROR, "no such call is running"))

    async def _answer_health(self, request_id: int) -> bytes:
        """Reply true/false from the service's health check; a raising check means false."""
        try:
            healthy = await self._invoker.health()
        except Exception:
            logger.warning("plugin health check raised", exc_info=True)
            healthy = False
        return encode_ok_reply(request_id, b"true" if healthy else b"false")

    def _call_now(self, conn: _Connection, request_id: int, request: dict[str, Any]) -> None:
        """A quick plain call run right here on the loop (the invoker said it may)."""
        try:
            inputs, parameters = call_arguments(request)
        except TypeError as exc:
            conn.send(_refused(request_id, VALIDATION_ERROR, str(exc)))
            return
        try:
            result = self._invoker.call_now(inputs, parameters)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a reply, logged in _failure_reply
            conn.send(_failure_reply(request_id, exc))
            return
        if inspect.isawaitable(result) or streams(result):
            # an awaitable a plain handler returned, or a stream: under the call's deadline
            conn.start_call(request_id, asyncio.ensure_future(
                self._runner.run(conn, request_id, request, (result,))))
            return
        conn.send(encode_reply(request_id, result))


def _failure_reply(request_id: int, exc: BaseException) -> bytes:
    return failure_reply(request_id, exc)
