"""The replica's Unix-socket server: framed requests in, framed replies out.

Requests on one connection are answered concurrently and replies may leave out of order;
the client matches them by id. A plugin exception becomes an error reply and never stops
the server. On stop the listener closes, connections stop reading, and in-flight requests
get up to the drain timeout to finish and be answered.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path
from typing import Any

from plughost.worker.invoke import ServiceInvoker
from plughost.worker.protocol import (
    FrameError,
    ResultEncodingError,
    decode_object,
    encode_error_reply,
    encode_frame,
    encode_ok_reply,
    encode_result,
    read_frame,
    recover_request_id,
)

logger = logging.getLogger(__name__)

PROTOCOL_ERROR = "ProtocolError"
VALIDATION_ERROR = "ValidationError"


class _Connection:
    """One client connection: serialised writes and the requests still being answered."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.tasks: set[asyncio.Task[None]] = set()
        self._write_lock = asyncio.Lock()

    async def send(self, body: bytes) -> None:
        """Write one reply frame; a vanished peer is logged, not raised."""
        frame = encode_frame(body)
        async with self._write_lock:
            if self.writer.is_closing():
                return
            try:
                self.writer.write(frame)
                await self.writer.drain()
            except (ConnectionError, OSError) as exc:
                logger.debug("client went away before a reply could be sent: %s", exc)

    async def close(self) -> None:
        """Close the transport and wait for it to go."""
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError) as exc:
            logger.debug("error while closing a connection: %s", exc)


def _call_arguments(request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``inputs`` and ``parameters`` of a call, from the request or its spliced ``body``.

    Raises TypeError when either is present but not a JSON object.
    """
    source = request.get("body", request)
    if not isinstance(source, dict):
        raise TypeError("request body must be a JSON object")
    inputs = source.get("inputs") or {}
    parameters = source.get("parameters") or {}
    if not isinstance(inputs, dict):
        raise TypeError("inputs must be a JSON object")
    if not isinstance(parameters, dict):
        raise TypeError("parameters must be a JSON object")
    return inputs, parameters


class ReplicaServer:
    """Serves one plugin over a Unix socket until asked to stop."""

    def __init__(
        self,
        invoker: ServiceInvoker,
        socket_path: Path,
        drain_timeout_s: float,
        listen_fd: int | None = None,
    ):
        self._invoker = invoker
        self._socket_path = socket_path
        self._listen_fd = listen_fd
        self._drain_timeout_s = drain_timeout_s
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()
        self._readers: set[asyncio.Task[Any]] = set()
        self._stop_requested = asyncio.Event()

    async def start(self) -> None:
        """Bind and listen, replacing a stale socket file; only the owner may connect.

        With ``listen_fd`` the socket was bound by the parent (a sandboxed replica cannot see
        the socket's folder) and is served as it is.
        """
        if self._listen_fd is not None:
            sock = socket.socket(fileno=self._listen_fd)
            self._server = await asyncio.start_unix_server(self._handle_connection, sock=sock)
            return
        if self._socket_path.exists() or self._socket_path.is_symlink():
            self._socket_path.unlink()
        self._server = await asyncio.start_unix_server(
            self._handle_connection, path=str(self._socket_path)
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
        for reader in list(self._readers):
            reader.cancel()
        pending = {task for conn in self._connections for task in conn.tasks}
        if pending:
            _, unfinished = await asyncio.wait(pending, timeout=self._drain_timeout_s)
            if unfinished:
                logger.warning("%d call(s) still running after the drain timeout", len(unfinished))
            for task in unfinished:
                task.cancel()
        for conn in list(self._connections):
            await conn.close()
        self._invoker.shutdown()

    def _remove_socket_file(self) -> None:
        """Remove the socket file so no new client can connect."""
        try:
            self._socket_path.unlink()
        except FileNotFoundError:
            pass

    async def _handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Read requests until the peer leaves, then wait for its replies and close."""
        conn = _Connection(writer)
        self._connections.add(conn)
        current = asyncio.current_task()
        if current is not None:
            self._readers.add(current)
        try:
            await self._read_requests(reader, conn)
        except asyncio.CancelledError:
            return  # stopping: serve_until_stopped drains and closes this connection
        finally:
            if current is not None:
                self._readers.discard(current)
        if conn.tasks:
            await asyncio.wait(set(conn.tasks))
        await conn.close()
        self._connections.discard(conn)

    async def _read_requests(self, reader: asyncio.StreamReader, conn: _Connection) -> None:
        """Start a task per request frame until end of stream or an unreadable frame."""
        while not self._stop_requested.is_set():
            try:
                body = await read_frame(reader)
            except (FrameError, ConnectionError) as exc:
                logger.warning("dropping connection: %s", exc)
                return
            if body is None:
                return
            task = asyncio.create_task(self._respond(conn, body))
            conn.tasks.add(task)
            task.add_done_callback(conn.tasks.discard)

    async def _respond(self, conn: _Connection, body: bytes) -> None:
        """Answer one request frame."""
        await conn.send(await self.answer(body))

    async def answer(self, body: bytes) -> bytes:
        """The reply body for one request body; never raises for a plugin's failure."""
        try:
            request = decode_object(body)
        except FrameError as exc:
            return encode_error_reply(recover_request_id(body), PROTOCOL_ERROR, str(exc))
        request_id = request.get("id")
        if not isinstance(request_id, int) or isinstance(request_id, bool):
            return encode_error_reply(None, PROTOCOL_ERROR, "request has no integer id")
        op = request.get("op")
        if op == "health":
            return await self._answer_health(request_id)
        if op == "call":
            return await self._answer_call(request_id, request)
        return encode_error_reply(request_id, PROTOCOL_ERROR, f"unknown op {op!r}")

    async def _answer_health(self, request_id: int) -> bytes:
        """Reply true/false from the service's health check; a raising check means false."""
        try:
            healthy = await self._invoker.health()
        except Exception:
            logger.warning("plugin health check raised", exc_info=True)
            healthy = False
        return encode_ok_reply(request_id, b"true" if healthy else b"false")

    async def _answer_call(self, request_id: int, request: dict[str, Any]) -> bytes:
        """Run the plugin and encode its result, or the reason it failed."""
        try:
            inputs, parameters = _call_arguments(request)
        except TypeError as exc:
            return encode_error_reply(request_id, VALIDATION_ERROR, str(exc))
        try:
            result = await self._invoker.call(inputs, parameters)
        except (Exception, SystemExit) as exc:  # a plugin failure is a reply, not a crash
            logger.warning("plugin raised %s", type(exc).__name__, exc_info=True)
            return encode_error_reply(request_id, type(exc).__name__, str(exc))
        try:
            return encode_ok_reply(request_id, encode_result(result))
        except ResultEncodingError as exc:
            return encode_error_reply(request_id, type(exc).__name__, str(exc))
