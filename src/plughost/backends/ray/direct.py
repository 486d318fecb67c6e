"""The server's direct channels to the workers of one Ray Serve application.

Each worker (:mod:`plughost.backends.ray.worker`) is reached over the local backend's own
protocol and channel (:class:`~plughost.backends.channel.ReplicaChannel`): its Unix socket
when it runs on the server's node, else the replica's TCP relay after the HMAC handshake.
Calls go to the least busy connected worker; a call whose worker went away is retried once
on another one, a call without a reply in time is never retried (as on the local backend)
and asks the replica to kill its worker, so Serve replaces it.

When the set is made inside a release's start (the controller sets that release's
:data:`~plughost.logs.capture.REPLICA_OUTPUT` sink around it), each worker's output is
followed too: a second relay connection in mode ``L`` brings its lines, which go to the
sink, i.e. the release's log store, as a local replica's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from plughost.backends import client
from plughost.backends.channel import ChannelClosed, ContainerHandler, ReplicaChannel
from plughost.backends.ray.relay import (
    MAGIC,
    MODE_KILL,
    MODE_LOGS,
    MODE_RELAY,
    NONCE_BYTES,
    answer,
)
from plughost.backends.stream import CallStream
from plughost.errors import CallTimedOut, Unavailable
from plughost.logs.capture import REPLICA_OUTPUT

log = logging.getLogger("plughost.backend.ray")

CONNECT_TIMEOUT_S = 5.0
MAX_LOG_LINE_BYTES = 64 * 1024


class DirectTimeout(CallTimedOut):
    """A call got no reply in time; its worker is being killed."""


class DirectWorker:
    """One connected worker."""

    def __init__(
        self, replica_id: str, info: dict[str, Any], channel: ReplicaChannel, via: str
    ) -> None:
        self.replica_id = replica_id
        self.info = info
        self.channel = channel
        self.via = via  # "unix" or "tcp"
        self.in_flight = 0

    @property
    def load(self) -> int:
        """Calls in flight plus the channel's streams and stopped calls still running."""
        return self.in_flight + self.channel.busy

    @property
    def alive(self) -> bool:
        return self.channel.closed_reason is None


async def _authenticate(sock: socket.socket, secret: bytes, mode: bytes) -> None:
    loop = asyncio.get_running_loop()
    head = b""
    while len(head) < len(MAGIC) + NONCE_BYTES:
        chunk = await loop.sock_recv(sock, len(MAGIC) + NONCE_BYTES - len(head))
        if not chunk:
            raise ConnectionError("the relay closed during the handshake")
        head += chunk
    if not head.startswith(MAGIC):
        raise ConnectionError("not a plughost relay")
    await loop.sock_sendall(sock, answer(secret, head[len(MAGIC) :]) + mode)


async def open_tcp(host: str, port: int, secret: bytes, mode: bytes = MODE_RELAY) -> socket.socket:
    """A connected, authenticated socket to a replica's relay."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await loop.sock_connect(sock, (host, port))
            await _authenticate(sock, secret, mode)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


class DirectSet:
    """The connected workers of one application; kept in step with the directory."""

    def __init__(
        self,
        app: str,
        node_id: str,
        call_timeout_s: float,
        container: ContainerHandler | None = None,
    ) -> None:
        self.app = app
        # the workers' container calls come back on these channels (offered on connect)
        self.container = container
        self.node_id = node_id
        self.call_timeout_s = call_timeout_s
        self.workers: dict[str, DirectWorker] = {}
        self._connecting: dict[str, asyncio.Task[None]] = {}
        self._given_up: set[str] = set()
        self._turn = 0
        self.infos: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Event()
        self.on_gone: Callable[[str], None] | None = None  # a replica the server dropped
        # the release's log sink when made during its start (see the module docstring)
        self.sink = REPLICA_OUTPUT.get()
        self._follows: dict[str, asyncio.Task[None]] = {}

    # -- membership -------------------------------------------------------------------------
    def update(self, listing: dict[str, dict[str, Any]]) -> None:
        """Connect to new workers, drop those that left the directory."""
        self.infos = dict(listing)
        for rid in list(self.workers):
            if rid not in listing:
                self.workers.pop(rid).channel.close()
        for rid in list(self._follows):
            if rid not in listing:
                self._follows.pop(rid).cancel()
        for rid, info in listing.items():
            if rid in self.workers or rid in self._connecting or rid in self._given_up:
                continue
            task = asyncio.create_task(self._connect(rid, info))
            self._connecting[rid] = task
            task.add_done_callback(lambda _t, rid=rid: self._connecting.pop(rid, None))
        self.changed.set()

    async def _connect(self, rid: str, info: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()

        def factory() -> ReplicaChannel:
            return ReplicaChannel(
                lambda timeout_s, is_call: self._timed_out(rid, timeout_s, is_call),
                lambda reason: self._lost(rid, reason),
                self.container,
                self.call_timeout_s,  # a stopped call's runaway thread ends the replica
            )

        try:
            unix = str(info.get("unix") or "")
            if info.get("node_id") == self.node_id and unix and Path(unix).exists():
                _, channel = await loop.create_unix_connection(factory, unix)
                via = "unix"
            else:
                sock = await open_tcp(
                    str(info["host"]), int(info["port"]), bytes.fromhex(str(info["secret"]))
                )
                _, channel = await loop.create_connection(factory, sock=sock)
                via = "tcp"
        except (OSError, TimeoutError, ConnectionError, KeyError, ValueError) as exc:
            log.warning("cannot reach the worker of %s replica %s: %s", self.app, rid, exc)
            self._given_up.add(rid)
            return
        if self.container is not None:
            try:
                await client.offer_container(channel.request, CONNECT_TIMEOUT_S)
            except (ChannelClosed, Unavailable) as exc:
                log.warning("worker of %s replica %s refused container calls: %s", self.app, rid, exc)
        self.workers[rid] = DirectWorker(rid, info, channel, via)
        if self.sink is not None and rid not in self._follows:
            self._follows[rid] = asyncio.create_task(self._follow(rid, info, self.sink))
        self.changed.set()

    async def _follow(
        self, rid: str, info: dict[str, Any], sink: Callable[[int, str], None]
    ) -> None:
        """The worker's output lines into the release's sink, until the replica goes."""
        try:
            sock = await open_tcp(
                str(info["host"]), int(info["port"]), bytes.fromhex(str(info["secret"])), MODE_LOGS
            )
            reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_LOG_LINE_BYTES)
        except (OSError, TimeoutError, ConnectionError, KeyError, ValueError) as exc:
            log.info("cannot follow the output of %s replica %s: %s", self.app, rid, exc)
            return
        try:
            while line := await reader.readline():
                with contextlib.suppress(orjson.JSONDecodeError, TypeError, ValueError):
                    pid, text = orjson.loads(line)
                    sink(int(pid), str(text))
        except (OSError, ValueError) as exc:  # a line past the limit, a reset connection
            log.info("output of %s replica %s no longer followed: %s", self.app, rid, exc)
        finally:
            writer.close()

    def _lost(self, rid: str, reason: str) -> None:
        """A connection dropped under a live set: as on the local backend, a replica the
        server cannot talk to is ended (Serve replaces it) and leaves the directory."""
        worker = self.workers.pop(rid, None)
        if worker is None:
            return
        self._given_up.add(rid)
        log.warning("worker of %s replica %s: %s; replacing it", self.app, rid, reason)
        asyncio.ensure_future(self._kill(worker.info))
        if self.on_gone is not None:
            self.on_gone(rid)
        self.changed.set()

    def _timed_out(self, rid: str, timeout_s: float, is_call: bool) -> BaseException:
        if not is_call:
            return Unavailable(f"no reply within {timeout_s:g} s")
        info = self.infos.get(rid)
        if info is not None:
            asyncio.ensure_future(self._kill(info))
        return DirectTimeout(f"no reply within {timeout_s:g} s; the replica was killed")

    async def _kill(self, info: dict[str, Any]) -> None:
        """Ask the replica (through its relay) to kill its worker; Serve replaces it."""
        try:
            sock = await open_tcp(
                str(info["host"]), int(info["port"]), bytes.fromhex(str(info["secret"])), MODE_KILL
            )
        except (OSError, TimeoutError, ConnectionError, KeyError, ValueError) as exc:
            log.warning("cannot ask %s to kill its worker: %s", self.app, exc)
            return
        with contextlib.closing(sock), contextlib.suppress(OSError):
            await asyncio.sleep(0.2)

    @property
    def ready(self) -> int:
        return sum(1 for w in self.workers.values() if w.alive)

    def close(self) -> None:
        for task in [*self._connecting.values(), *self._follows.values()]:
            task.cancel()
        self._follows.clear()
        for worker in self.workers.values():
            worker.channel.close()
        self.workers.clear()

    # -- calls ------------------------------------------------------------------------------
    def pick(self, avoid: DirectWorker | None = None) -> DirectWorker | None:
        """The least busy live worker; ties go round-robin (so light sequential traffic
        still reaches every replica, as Serve's router would spread it)."""
        workers = list(self.workers.values())
        count = len(workers)
        self._turn = (self._turn + 1) % max(count, 1)
        best: DirectWorker | None = None
        for i in range(count):
            worker = workers[(self._turn + i) % count]
            if worker is avoid or not worker.alive:
                continue
            if best is None or worker.load < best.load:
                best = worker
        return best

    async def call(
        self, worker: DirectWorker, body: bytes, deadline_s: float | None = None
    ) -> bytes | CallStream:
        """One call on ``worker``; ChannelClosed when it went away."""
        worker.in_flight += 1
        try:
            return await client.call(
                worker.channel.request, body, self.call_timeout_s, refusal_is_failure=True,
                deadline_s=deadline_s,
            )
        finally:
            worker.in_flight -= 1

    async def call_body(self, body: bytes, deadline_s: float | None = None) -> bytes | CallStream:
        worker = self.pick()
        if worker is None:
            raise Unavailable("no worker connected")
        try:
            return await self.call(worker, body, deadline_s)
        except ChannelClosed as exc:
            other = self.pick(avoid=worker)
            if other is None:
                raise Unavailable(f"replica went away during the call: {exc}") from None
            try:
                return await self.call(other, body, deadline_s)
            except ChannelClosed as again:
                raise Unavailable(f"replica went away during the call: {again}") from None

    async def health(self, timeout_s: float = 5.0) -> bool:
        workers = [w for w in self.workers.values() if w.alive]
        if not workers:
            return False

        async def one(worker: DirectWorker) -> bool:
            try:
                return await client.ping(worker.channel.request, timeout_s)
            except (ChannelClosed, Unavailable):
                return False

        return all(await asyncio.gather(*(one(w) for w in workers)))
