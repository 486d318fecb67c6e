"""Zero-downtime takeover between two `plughost serve` on one home and port.

The running server listens on a control socket named after its home and port (a Linux
abstract Unix socket; only a process of the same user is answered). A new server on the same
home and port connects before it starts and asks for a takeover:

1. the old server stops its controller (no tick, rollouts in flight finish first), gives up
   the SQLite file lock or the PostgreSQL lease at once, and sends its listening socket over
   the control connection (SCM_RIGHTS): both processes now accept from one accept queue;
2. the new server takes the lock or lease, builds its runtime, adopts the replicas (the
   replica registry) and, once its first pass restored every deployed release, says
   ``serving``;
3. the old server stops accepting, answers what it holds and exits, leaving its replicas
   running (they are the new server's now).

If the new server goes away before step 3, the old one takes its lock or lease back and goes
on as before. One socket shared, rather than a second one bound with SO_REUSEPORT: closing
a SO_REUSEPORT listener resets the connections queued on it (unless the kernel's
net.ipv4.tcp_migrate_req is on), which would fail requests under load.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from plughost.config import Settings
from plughost.server.port_keeper import same_user

log = logging.getLogger("plughost.server.handover")

TAKEOVER_READY_TIMEOUT_S = 600.0  # how long the old server waits for the new one's start


def control_address(settings: Settings) -> str:
    """The abstract socket name of the server on this home and port."""
    home = str(settings.resolved_home.resolve())
    digest = hashlib.sha256(f"{home}\0{settings.port}".encode()).hexdigest()[:24]
    return f"\0plughost-serve-{digest}"


def database_tag(settings: Settings) -> str:
    """Which database a server runs on, without its password: a takeover needs the same."""
    return hashlib.sha256(settings.resolved_database_url.encode()).hexdigest()[:16]


def _send(conn: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode() + b"\n"
    if fds:
        socket.send_fds(conn, [data], fds)
    else:
        conn.sendall(data)


def _read_line(conn: socket.socket, timeout: float | None) -> tuple[dict[str, Any], list[int]]:
    """One JSON line and any descriptors sent with it (blocking; the successor's side)."""
    conn.settimeout(timeout)
    buf, fds = b"", []
    while not buf.endswith(b"\n"):
        data, got, _flags, _addr = socket.recv_fds(conn, 65536, 4)
        for fd in got:  # received without close-on-exec: no replica may inherit the port
            os.set_inheritable(fd, False)
        fds.extend(got)
        if not data:
            raise ConnectionError("the running server closed the control connection")
        buf += data
    return json.loads(buf), fds


def ask(settings: Settings, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """One request to the server running on this home and port (ConnectionError: none)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(control_address(settings))
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise ConnectionError("no plughost server runs on this home and port") from exc
        _send(conn, message)
        reply, fds = _read_line(conn, timeout)
        for fd in fds:
            os.close(fd)
        return reply


@dataclass
class Handoff:
    """The new server's side of a takeover: the control connection and the old listener."""

    conn: socket.socket
    listener: socket.socket
    pid: int

    def serving(self) -> None:
        """Tell the old server to stop accepting, drain and exit."""
        with contextlib.suppress(OSError):
            _send(self.conn, {"op": "serving", "pid": os.getpid()})
        self.conn.close()

    def abandon(self) -> None:
        """Give up (the old server resumes)."""
        self.conn.close()


def ask_predecessor(settings: Settings, timeout: float = 180.0) -> Handoff | None:
    """Take over from the server running on this home and port, if one does: returns once it
    has paused its controller and released its lock or lease, with its listening socket;
    None when no server runs here. RuntimeError when it refuses."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(control_address(settings))
    except (ConnectionRefusedError, FileNotFoundError):
        conn.close()
        return None
    try:
        _send(conn, {"op": "takeover", "pid": os.getpid(), "database": database_tag(settings)})
        reply, fds = _read_line(conn, timeout)
    except (OSError, ValueError) as exc:
        conn.close()
        raise RuntimeError(f"the running plughost server did not hand over: {exc}") from None
    if not reply.get("ok") or len(fds) != 1:
        conn.close()
        for fd in fds:
            os.close(fd)
        raise RuntimeError(f"the running plughost server refused the takeover: {reply}")
    conn.settimeout(None)
    log.warning("taking over from the plughost server pid %s", reply.get("pid"))
    return Handoff(conn, socket.socket(fileno=fds[0]), int(reply.get("pid", 0)))


class ControlServer:
    """The running server's side: answers `hello`, `restart` and `takeover` requests.

    ``pause(pid)`` stops the controller, releases the lock or lease and hands the replicas
    to that process; ``resume()`` undoes it,
    ``finish()`` stops accepting and drains (replicas kept), ``restart()`` starts a successor.
    """

    def __init__(
        self,
        settings: Settings,
        listener: socket.socket,
        pause: Callable[[int], Awaitable[None]],
        resume: Callable[[], Awaitable[None]],
        finish: Callable[[], None],
        restart: Callable[[], int],
    ) -> None:
        self.settings = settings
        self.listener = listener
        self.pause, self.resume, self.finish, self.restart = pause, resume, finish, restart
        self.state = "serving"
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, wait_s: float = 10.0) -> None:
        """Bind the control socket (the old server's goes when it hands over: retry)."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(control_address(self.settings))
                break
            except OSError:
                sock.close()
                if asyncio.get_running_loop().time() > deadline:
                    log.error("no takeover possible: the control socket stays taken")
                    return
                await asyncio.sleep(0.1)
        sock.listen(8)
        sock.setblocking(False)
        self._sock = sock
        self._task = asyncio.create_task(self._accept(sock), name="plughost-handover")

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._stop_listening()

    def _stop_listening(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while self._sock is sock:
            conn, _ = await loop.sock_accept(sock)
            try:
                await self._serve(conn)
            except Exception:  # a bad request never stops the server
                log.exception("control request failed")
            finally:
                conn.close()

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        if not same_user(conn):
            return
        request = json.loads(await asyncio.wait_for(_line(loop, conn), 10.0))
        op = request.get("op")
        if op == "hello":
            _send(conn, {"pid": os.getpid(), "port": self.settings.port, "state": self.state})
        elif op == "restart":
            _send(conn, {"ok": True, "pid": os.getpid(), "successor": self.restart()})
        elif op == "takeover" and request.get("database") != database_tag(self.settings):
            _send(
                conn,
                {
                    "ok": False,
                    "error": (
                        "it runs on another database (PLUGHOST_DATABASE_URL differs); a takeover "
                        "needs the same home, port and database"
                    ),
                },
            )
        elif op == "takeover":
            await self._hand_over(conn, int(request.get("pid", 0)))
        else:
            _send(conn, {"ok": False, "error": f"unknown op {op!r}"})

    async def _hand_over(self, conn: socket.socket, successor: int) -> None:
        log.warning("handing over to the plughost server pid %s", successor)
        self.state = "handing_over"
        self._stop_listening()  # one takeover at a time; the successor binds the socket
        try:
            await self.pause(successor)
        except Exception as exc:
            log.exception("could not pause for the takeover: this server goes on")
            await self.resume()
            self.state = "serving"
            await self.start()
            _send(conn, {"ok": False, "error": f"the running server could not pause: {exc}"})
            return
        conn.setblocking(True)
        _send(conn, {"ok": True, "pid": os.getpid()}, [self.listener.fileno()])
        conn.setblocking(False)
        try:
            line = await asyncio.wait_for(
                _line(asyncio.get_running_loop(), conn), TAKEOVER_READY_TIMEOUT_S
            )
            done = json.loads(line).get("op") == "serving"
        except (TimeoutError, OSError, ValueError):
            done = False
        finally:
            conn.close()
        if done:
            log.warning("pid %s serves now: this server stops accepting and drains", successor)
            self.state = "draining"
            self.finish()
            return
        log.error("the new server (pid %s) did not take over: this one goes on", successor)
        await self.resume()
        self.state = "serving"
        await self.start()


async def _line(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    conn.setblocking(False)
    buf = b""
    while not buf.endswith(b"\n"):
        data = await loop.sock_recv(conn, 65536)
        if not data:
            raise ConnectionError("control connection closed")
        buf += data
    return buf
