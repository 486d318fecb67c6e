"""The TCP relay of a Ray replica's worker: the HMAC handshake, then one of three modes.

A client connects to the port the replica opened on its node's address; the relay sends
``MAGIC`` and a random nonce, the client answers ``HMAC-SHA256(secret, nonce)`` and one mode
byte: ``R`` relays bytes both ways to the worker's Unix socket (the server's calls), ``K``
kills the worker (a call timed out; Serve replaces the replica), ``L`` streams the worker's
output lines (:class:`OutputFeed`) until the client goes. The secret is made by the replica
and reaches the server only through Ray, so nothing unauthenticated listens on the network.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
from collections import deque
from pathlib import Path
from typing import Protocol

from plughost.logs.terminal import bounded_tagged_line

log = logging.getLogger("plughost.ray.worker")

MAGIC = b"PHR1"
MODE_RELAY = b"R"
MODE_KILL = b"K"
MODE_LOGS = b"L"
NONCE_BYTES = 32
AUTH_TIMEOUT_S = 5.0
RELAY_CHUNK = 256 * 1024


def answer(secret: bytes, nonce: bytes) -> bytes:
    """The proof a relay client sends for ``nonce`` (followed by one mode byte)."""
    return hmac.new(secret, b"plughost-ray-relay:" + nonce, hashlib.sha256).digest()


class RelayHost(Protocol):
    """What the relay needs of the worker's host (:class:`~.worker.WorkerHost`)."""

    secret: bytes
    socket_path: Path
    output: OutputFeed

    def kill_worker(self) -> None: ...


BACKLOG_LINES = 1000  # lines kept while no server follows the output
MAX_FOLLOWER_BUFFER = 4 << 20  # bytes queued to a slow follower before lines are dropped
# a line is escaped and cut to this before it is queued or sent: its JSON stays under the
# server's read limit (plughost.backends.ray.direct.MAX_LOG_LINE_BYTES, 64 KiB), whatever
# the plugin printed (the server cuts again to PLUGHOST_LOG_LINE_MAX_BYTES)
WIRE_LINE_BYTES = 16 * 1024
_capture_installed = False


class OutputFeed:
    """The worker's output lines, for the server's log stream (``MODE_LOGS``).

    The worker's output pump logs each line to ``plughost.replica.output``; with this feed's
    :meth:`add` as the pump's :data:`~plughost.logs.capture.REPLICA_OUTPUT` sink, the
    capture filter hands the line here instead of Ray's log file. Lines no server has seen
    yet (those printed before it connected, e.g. at import) wait in a bounded backlog and go
    to the first follower; a follower that cannot keep up loses lines rather than this
    process's memory. All on the host's loop thread."""

    def __init__(self) -> None:
        self._unsent: deque[bytes] = deque(maxlen=BACKLOG_LINES)
        self._followers: set[asyncio.Transport] = set()
        self.dropped = 0

    def add(self, pid: int, line: str) -> None:
        data = json.dumps([pid, bounded_tagged_line(line, WIRE_LINE_BYTES)]).encode() + b"\n"
        live = [t for t in self._followers if not t.is_closing()]
        if not live:
            self._unsent.append(data)
            return
        for transport in live:
            if transport.get_write_buffer_size() > MAX_FOLLOWER_BUFFER:
                self.dropped += 1
            else:
                transport.write(data)

    def follow(self, transport: asyncio.Transport) -> None:
        for data in self._unsent:
            transport.write(data)
        self._unsent.clear()
        self._followers.add(transport)

    def unfollow(self, transport: asyncio.Transport) -> None:
        self._followers.discard(transport)


def install_capture() -> None:
    """Route ``plughost.replica.output`` records to the sink of their context (once)."""
    global _capture_installed
    if not _capture_installed:
        from plughost.logs import capture

        capture.install()
        _capture_installed = True


class Relay(asyncio.Protocol):
    """One TCP client: nonce out, proof in, then bytes both ways to the worker's socket."""

    def __init__(self, host: RelayHost) -> None:
        self._host = host
        self._nonce = secrets.token_bytes(NONCE_BYTES)
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._peer: asyncio.Transport | None = None
        self._authed = False
        self._following = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        transport.write(MAGIC + self._nonce)  # type: ignore[attr-defined]
        self._timer = asyncio.get_running_loop().call_later(AUTH_TIMEOUT_S, self.drop)

    def drop(self) -> None:
        """Close the client's connection (its peer side, if any, follows)."""
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._following:
            return
        if self._authed:
            if self._peer is not None:
                self._peer.write(data)
            else:
                self._buffer += data
            return
        self._buffer += data
        if len(self._buffer) < 33:
            return
        proof, mode, self._buffer = self._buffer[:32], self._buffer[32:33], self._buffer[33:]
        if not hmac.compare_digest(proof, answer(self._host.secret, self._nonce)):
            log.warning("relay: a client failed the replica's handshake; closing it")
            self.drop()
            return
        if self._timer is not None:
            self._timer.cancel()
        if mode == MODE_KILL:  # the server's call timed out: end the worker (Serve replaces us)
            log.warning(
                "the server asked to kill this replica's worker (a call timed out or its "
                "connection failed)"
            )
            self._host.kill_worker()
            self.drop()
            return
        if mode == MODE_LOGS and self._transport is not None:
            self._following = True
            self._host.output.follow(self._transport)
            return
        self._authed = True
        asyncio.ensure_future(self._open_peer())

    async def _open_peer(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            peer, _ = await loop.create_unix_connection(
                lambda: _Back(self), str(self._host.socket_path)
            )
        except OSError:
            self.drop()
            return
        self._peer = peer
        if self._buffer:
            peer.write(self._buffer)
            self._buffer = b""

    def back(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._following and self._transport is not None:
            self._host.output.unfollow(self._transport)
        if self._peer is not None:
            self._peer.close()


class _Back(asyncio.Protocol):
    """The worker side of one relayed connection."""

    def __init__(self, front: Relay) -> None:
        self._front = front

    def data_received(self, data: bytes) -> None:
        self._front.back(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._front.drop()
