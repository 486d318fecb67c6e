"""The `plughost serve` process around uvicorn: its listening socket, the takeover hooks into
the runtime (plughost.server.handover has the protocol), and SIGHUP, which starts a successor with
the same arguments that takes over from this process (`plughost restart` asks for the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import uvicorn

from plughost.backends.local.registry import ReplicaRecord, ReplicaRegistry
from plughost.config import Settings
from plughost.server.handover import ControlServer, Handoff
from plughost.server.port_keeper import KeeperLink

if TYPE_CHECKING:  # the server's modules come after the port and the migration's start
    from plughost.backends.base import ReplicaGroup
    from plughost.server.wiring import Runtime

log = logging.getLogger("plughost.server.handover")

ROLLOUT_WAIT_S = 120.0  # a takeover lets the rollouts in flight finish first, this long
RESTORE_WAIT_S = 30.0  # the new server waits this long for its restores before `serving`


def bind_listener(host: str, port: int) -> socket.socket:
    """The server's TCP listening socket (RuntimeError when the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise RuntimeError(
                f"port {port} is in use by another process (a plughost server on the same "
                "home and port would have been taken over)"
            ) from None
        raise
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def hand_replicas(settings: Settings) -> list[ReplicaRecord]:
    """Let go of this server's replica records: they name no server any more (pid 0), so
    the registry counts them as a gone server's and the next server to scan it, the
    successor, adopts them (plughost.backends.local.adopt: a server takes neither its own
    records nor a running server's). Returns the records as they were."""
    if settings.backend != "local":
        return []
    registry = ReplicaRegistry(settings.replicas_dir)
    mine = [r for r in registry.load() if r.server_pid == os.getpid()]
    for record in mine:
        registry.write(replace(record, server_pid=0, server_start_time=0))
    return mine


def take_replicas_back(settings: Settings, records: list[ReplicaRecord]) -> None:
    """A takeover that did not happen: the records not adopted meanwhile name us again."""
    registry = ReplicaRegistry(settings.replicas_dir)
    current = {r.replica_id: r for r in registry.load()}
    for record in records:
        now = current.get(record.replica_id)
        if now is not None and now.server_pid != record.server_pid:
            registry.write(record)


def stop_reading_output(groups: Iterable[ReplicaGroup]) -> int:
    """Stop following the replicas' output files where they are, reading nothing more: each
    file's saved position is where this server stopped, and the successor reads on from
    there once it adopts the replica, so no line is stored twice or lost. (No final read
    here: lines are stored only from the reading task's own context, plughost.logs.capture;
    its next poll sees the reader stopped and ends.) Each reader closes its own files.
    Returns how many were followed."""
    return sum(g.stop_following_output() for g in groups)


def successor_command() -> list[str]:
    """This server's own command line, to start its successor."""
    return [sys.executable, "-m", "plughost", *sys.argv[1:]]


class TakeoverServer(uvicorn.Server):
    """uvicorn's server plus the takeover: as the new process, tell the old one when this
    one serves; as the running one, answer a successor (plughost.server.handover.ControlServer)."""

    def __init__(
        self, config: uvicorn.Config, settings: Settings, state: Any, handoff: Handoff | None
    ) -> None:
        super().__init__(config)
        self.settings = settings
        self.state = state  # the FastAPI app's state: .runtime once started
        self.handoff = handoff
        self.control: ControlServer | None = None
        self._successor: subprocess.Popen[bytes] | None = None
        self._handed: list[ReplicaRecord] = []
        self._tails = 0
        self._kept = settings.keep_replicas_on_stop
        self.keeper: KeeperLink | None = None  # plughost.server.port_keeper: holds the port across a crash

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit or not sockets:
            return
        self.control = ControlServer(
            self.settings, sockets[0], self._pause, self._resume, self._finish, self._restart
        )
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._restart)
        self._started = asyncio.create_task(self._take_over(), name="plughost-takeover-start")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.control is not None:
            self.control.close()
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        await super().shutdown(sockets)
        # here, not after run(): uvicorn raises the SIGTERM it caught again once it stopped,
        # which ends the process before any code after run()
        self.leave_keeper()

    def leave_keeper(self) -> None:
        """A plain stop closes the port (the keeper exits unless a successor is joined); a
        stop that leaves the replicas (a handover, or a restart meant to adopt them) leaves
        the port with the keeper too (plughost.server.port_keeper)."""
        if self.keeper is None:
            return
        if self.settings.keep_replicas_on_stop:
            self.keeper.close()
        else:
            self.keeper.bye()
        self.keeper = None

    async def _take_over(self) -> None:
        """The new server: serve first (the restores done or held), then let the old one go."""
        if self.handoff is not None:
            runtime = self.state.runtime
            deadline = time.monotonic() + RESTORE_WAIT_S
            while not runtime.controller.restores.settled() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            self.handoff.serving()
            log.warning(
                "this server serves now; the one before (pid %s) drains and exits", self.handoff.pid
            )
            self.handoff = None
        assert self.control is not None
        await self.control.start()

    # -- the running server's side of a takeover --------------------------------------------
    async def _pause(self, successor: int) -> None:
        """No controller pass from here on; rollouts in flight finish; the SQLite lock or the
        PostgreSQL lease goes at once; the replicas' records let go, for the successor
        (``successor``, the pid that asked) to adopt. Routes and replicas keep serving."""
        runtime: Runtime = self.state.runtime
        if not await runtime.controller.pause(ROLLOUT_WAIT_S):
            log.warning("handing over with a rollout in flight: the new server resumes it")
        await runtime.batches.stop()  # stopped jobs resume from their chunks on the new server
        if runtime.cluster is not None:
            await runtime.cluster.step_down()  # the lease or the SQLite lock goes at once
        # from here the replicas are the successor's: even a SIGTERM now must not stop them
        self._kept = self.settings.keep_replicas_on_stop
        self.settings.keep_replicas_on_stop = True
        self._handed = await asyncio.to_thread(hand_replicas, self.settings)
        self._tails = stop_reading_output(runtime.controller.groups.values())

    async def _resume(self) -> None:
        runtime: Runtime = self.state.runtime
        if runtime.cluster is not None:
            await runtime.cluster.rejoin()
        runtime.controller.resume()
        runtime.batches.start()
        self.settings.keep_replicas_on_stop = self._kept
        await asyncio.to_thread(take_replicas_back, self.settings, self._handed)
        self._handed = []
        if self._tails:
            log.warning(
                "%d replica(s) keep writing their output to their files, read by the next "
                "server that takes them over; this one stopped following them",
                self._tails,
            )
        self._tails = 0

    def _finish(self) -> None:
        """Stop accepting, answer what is held, exit; the replicas stay for the new server."""
        self.settings.keep_replicas_on_stop = True
        self._draining = asyncio.create_task(self._drain(), name="plughost-drain")

    async def _drain(self) -> None:
        """The shared accept queue is the new server's alone from here. uvicorn's own stop
        closes idle connections at once, which cuts a connection accepted just now whose
        request has not arrived yet, and a keep-alive client's next request: answer what
        comes on them for up to the keep-alive timeout, each with `Connection: close`."""
        for server in self.servers:
            server.close()
        deadline = time.monotonic() + self.config.timeout_keep_alive + 0.5
        while self.server_state.connections and time.monotonic() < deadline:
            for conn in list(self.server_state.connections):
                # uvicorn's connections: its HTTP protocols have a request cycle (None
                # between requests), its WebSocket ones none
                cycle = getattr(conn, "cycle", None)
                if cycle is not None and not cycle.response_complete:
                    cycle.keep_alive = False
            await asyncio.sleep(0.02)
        self.should_exit = True

    def _restart(self) -> int:
        """SIGHUP or `plughost restart`: start a successor with this server's arguments; it
        takes over like any second server on this home and port."""
        if self._successor is not None and self._successor.poll() is None:
            return self._successor.pid
        log.warning("starting a successor to take over: %s", " ".join(successor_command()))
        proc = subprocess.Popen(successor_command(), close_fds=True)
        self._successor = proc
        threading.Thread(target=proc.wait, daemon=True).start()
        return proc.pid


def run(
    settings: Settings,
    asgi: Any,
    listener: socket.socket,
    handoff: Handoff | None,
    log_level: str,
    keeper: KeeperLink | None = None,
) -> None:
    """Serve ``asgi`` on ``listener`` (the one handed over by ``handoff``, or our own);
    ``keeper`` holds a copy of it across a crash (plughost.server.port_keeper)."""
    config = uvicorn.Config(
        asgi, host=settings.host, port=settings.port, log_level=log_level, access_log=False
    )
    server = TakeoverServer(config, settings, asgi.state, handoff)
    server.keeper = keeper
    try:
        server.run(sockets=[listener])
    finally:
        if handoff is not None:
            handoff.abandon()
        server.leave_keeper()
