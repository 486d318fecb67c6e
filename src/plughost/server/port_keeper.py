"""The port keeper: the listening socket outlives a server that dies.

``plughost serve`` hands a copy of its listening socket to a small process of its own
session, ``python -I -m plughost.server.port_keeper``, which never accepts on it. While it holds the
socket the port stays open: a server SIGKILLed (or OOM-killed) leaves its clients'
connections queued in the kernel's accept queue instead of refused, and the next ``plughost
serve`` on the same home and port takes the socket from the keeper and answers them, while
its replicas were adopted (plughost.backends.local.adopt). Only the requests the dead process
had already accepted fail.

Every server on the home and port holds a connection to the keeper (the first one starts it,
a takeover's successor joins it). A server that stops deliberately says ``bye`` first; when
the last connection goes with a bye, the keeper exits and the port closes, as before. When
the last one goes without (a crash), the keeper lingers ``PLUGHOST_PORT_KEEP_S`` (60 s) for
a new server, then exits, so a server that never comes back turns into refused connections
rather than ones that hang. A stop with ``PLUGHOST_KEEP_REPLICAS_ON_STOP`` (a restart meant
to adopt) also keeps the port for that long. 0 turns the keeper off.

Only a process of the same user is answered (SO_PEERCRED), on an abstract Unix socket named
after the home and port, like the takeover's control socket (plughost.server.handover).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the keeper process imports no more than it needs (its RSS)
    from plughost.config import Settings

log = logging.getLogger("plughost.server.port_keeper")

JOIN_WAIT_S = 10.0  # a keeper nobody joins within this exits
START_WAIT_S = 5.0  # how long a server waits for the keeper it started to listen


def keeper_address(settings: Settings) -> str:
    home = str(settings.resolved_home.resolve())
    digest = hashlib.sha256(f"{home}\0{settings.port}\0keeper".encode()).hexdigest()[:24]
    return f"\0plughost-keeper-{digest}"


def same_user(conn: socket.socket) -> bool:
    """Whether the peer of a Unix connection runs as this process's user (SO_PEERCRED); the
    takeover's control socket asks the same (plughost.server.handover)."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return bool(struct.unpack("3i", raw)[1] == os.getuid())


# -- the server's side ----------------------------------------------------------------------
class KeeperLink:
    """A server's connection to the keeper; closing it without :meth:`bye` reads as a crash."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn: socket.socket | None = conn

    def bye(self) -> None:
        """A deliberate stop: the keeper exits if no other server is connected."""
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.sendall(b'{"op": "bye"}\n')
        self.close()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _connect(address: str) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(address)
    except (ConnectionRefusedError, FileNotFoundError):
        conn.close()
        return None
    conn.set_inheritable(False)
    return conn


def take(settings: Settings) -> tuple[socket.socket, KeeperLink] | None:
    """The listening socket a keeper holds for this home and port (its server died), and
    this server's link to it; None when no keeper runs (or it is off)."""
    if settings.port_keep_s <= 0:
        return None
    conn = _connect(keeper_address(settings))
    if conn is None:
        return None
    try:
        conn.settimeout(5.0)
        conn.sendall(b'{"op": "take"}\n')
        _data, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
        conn.settimeout(None)
    except OSError:
        conn.close()
        return None
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        conn.close()
        return None
    os.set_inheritable(fds[0], False)
    log.warning("took the listening socket of port %s from its keeper", settings.port)
    return socket.socket(fileno=fds[0]), KeeperLink(conn)


def attach(settings: Settings, listener: socket.socket) -> KeeperLink | None:
    """Join the keeper of this home and port, starting one with ``listener`` if none runs;
    None when off or when it could not start (the server runs on without one)."""
    if settings.port_keep_s <= 0:
        return None
    address = keeper_address(settings)
    conn = _connect(address)
    if conn is None:
        fd = listener.fileno()
        try:
            subprocess.Popen(
                [sys.executable, "-I", "-m", "plughost.server.port_keeper", "--fd", str(fd),
                 "--address", address[1:], "--linger", repr(float(settings.port_keep_s))],
                pass_fds=[fd], start_new_session=True, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, close_fds=True,
            )
        except OSError:
            log.warning("could not start the port keeper", exc_info=True)
            return None
        deadline = time.monotonic() + START_WAIT_S
        while conn is None and time.monotonic() < deadline:
            time.sleep(0.02)
            conn = _connect(address)
        if conn is None:
            log.warning("the port keeper did not start: a crash will close the port")
            return None
    try:
        conn.sendall(b'{"op": "join"}\n')
    except OSError:
        conn.close()
        return None
    return KeeperLink(conn)


# -- the keeper process ---------------------------------------------------------------------
def serve(listener_fd: int, address: str, linger_s: float) -> int:
    """Hold ``listener_fd`` until the last server leaves with a bye, or none is connected for
    ``linger_s``."""
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        control.bind("\0" + address)
    except OSError:  # another keeper holds this home and port already
        return 0
    control.listen(16)
    conns: dict[socket.socket, bool | None] = {}  # None: not joined yet; True: said bye
    deadline: float | None = time.monotonic() + JOIN_WAIT_S
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([control, *conns], [], [], timeout)
        if not ready and deadline is not None and time.monotonic() >= deadline:
            return 0
        for sock in ready:
            if sock is control:
                conn, _ = control.accept()
                if same_user(conn):
                    conns[conn] = None
                else:
                    conn.close()
                continue
            try:
                data = sock.recv(1024)
            except OSError:
                data = b""
            if not data:
                bye = conns.pop(sock, None)
                sock.close()
                if not any(state is not None for state in conns.values()):
                    if bye:
                        return 0
                    if bye is not None:  # a server went without a bye: it crashed
                        deadline = time.monotonic() + linger_s
                continue
            for line in data.split(b"\n"):
                try:
                    op = json.loads(line).get("op") if line.strip() else None
                except (ValueError, AttributeError):
                    op = None
                if op == "take":
                    with contextlib.suppress(OSError):
                        socket.send_fds(sock, [b'{"ok": true}\n'], [listener_fd])
                if op in ("take", "join"):
                    conns[sock] = False
                    deadline = None
                elif op == "bye" and conns.get(sock) is not None:
                    conns[sock] = True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plughost.server.port_keeper")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--linger", type=float, default=60.0)
    args = parser.parse_args(argv)
    return serve(args.fd, args.address, args.linger)


if __name__ == "__main__":
    raise SystemExit(main())
