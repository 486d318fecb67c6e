"""Inside the sandbox: a loopback listener relaying to the egress proxy's Unix socket.

Python's HTTP clients (urllib, requests, httpx) take a proxy URL, not a Unix socket; bubblewrap
gives the sandbox a network namespace of its own whose only interface is loopback. So the
process's bootstrap (replica, batch worker) calls :func:`start_from_env` after the sandbox
layers are on and before plugin code is imported: when :data:`plughost.egress.SOCKET_ENV`
names the proxy socket, a daemon thread listens on ``127.0.0.1:<free port>`` of that private
loopback and relays each connection to the socket, and ``HTTPS_PROXY``, ``HTTP_PROXY`` (and
their lower-case forms) point at it; ``NO_PROXY`` is removed. Each connection's first request
line and the proxy's answer are logged in the plugin's own output, so a refusal shows up in
its log stream. Standard library only. The relay decides nothing: the proxy does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading

from plughost.egress import SOCKET_ENV

log = logging.getLogger("plughost.egress")

PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")
NO_PROXY_VARS = ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
CHUNK = 64 * 1024


class Relay:
    """Accepts on a loopback port and relays each connection to the Unix socket ``target``."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> Relay:
        threading.Thread(target=self._accept, name="plughost-egress-relay", daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                threading.Thread(
                    target=self._relay, args=(client,), name="plughost-egress-conn", daemon=True
                ).start()
            except RuntimeError as exc:  # past the process limit: this connection only
                log.warning("egress: cannot relay one more connection: %s", exc)
                client.close()

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        first = {"request": b"", "answer": b""}
        counts = {"sent": 0, "received": 0}
        try:
            upstream.connect(self.target)
            pump(client, upstream, first, counts)
        except OSError as exc:
            log.warning("egress: the proxy cannot be reached: %s", exc)
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()
        request = _line(first["request"])
        if request:
            answer = _line(first["answer"]) or "no answer"
            status = answer.split(" ")[1:2]
            ok = bool(status) and status[0][:1] in ("2", "3")
            (log.info if ok else log.warning)(
                "egress: %s -> %s (sent %d bytes, received %d)",
                request,
                answer,
                counts["sent"],
                counts["received"],
            )


def pump(
    client: socket.socket,
    upstream: socket.socket,
    first: dict[str, bytes],
    counts: dict[str, int],
) -> None:
    """Copy bytes both ways until both sides have ended (half-closes passed on)."""
    selector = selectors.DefaultSelector()
    peers = {client: (upstream, "request", "sent"), upstream: (client, "answer", "received")}
    for sock in peers:
        selector.register(sock, selectors.EVENT_READ)
    open_sides = 2
    try:
        while open_sides:
            for key, _ in selector.select():
                src = key.fileobj
                assert isinstance(src, socket.socket)
                dst, name, count = peers[src]
                data = src.recv(CHUNK)
                if not data:
                    selector.unregister(src)
                    open_sides -= 1
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    continue
                if len(first[name]) < 512:
                    first[name] += data[:512]
                counts[count] += len(data)
                try:
                    dst.sendall(data)
                except OSError:  # that side is gone: what comes back still goes through
                    selector.unregister(src)
                    open_sides -= 1
    finally:
        selector.close()


def _line(data: bytes) -> str:
    line = data.split(b"\r\n", 1)[0][:300].decode("latin-1")
    return "".join(ch if ch.isprintable() else "?" for ch in line)


def start_from_env() -> str | None:
    """Start the relay when this sandbox has an egress socket; the proxy URL set, or None."""
    target = os.environ.get(SOCKET_ENV)
    if not target:
        return None
    relay = Relay(target).start()
    for name in PROXY_VARS:
        os.environ[name] = relay.url
    for name in NO_PROXY_VARS:
        os.environ.pop(name, None)
    return relay.url
