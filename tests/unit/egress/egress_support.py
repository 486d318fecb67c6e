"""Helpers of the egress tests: a small HTTP server on 127.0.0.1 standing for "outside", and a
proxy with its relay in this process (no sandbox)."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from plughost.egress import SOCKET_NAME
from plughost.egress.proxy import EgressProxy, Limits, Record
from plughost.egress.relay import Relay


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"outside {self.server.server_address[1]} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def outside_server() -> Iterator[tuple[int, list[str]]]:
    """An HTTP server on 127.0.0.1: its port, and the paths it was asked for."""
    hits: list[str] = []

    class Handler(_Handler):
        def do_GET(self) -> None:
            hits.append(self.path)
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), hits
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class ProxyRig:
    proxy: EgressProxy
    relay: Relay
    records: list[Record] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.proxy.folder_of("ns_a", "r1") / SOCKET_NAME


@contextmanager
def proxy_rig(
    entries: Sequence[str], limits: Limits | None = None, resolver: Callable | None = None
) -> Iterator[ProxyRig]:
    """A proxy whose namespace ``ns_a`` has ``entries``, and a relay to its ``r1`` socket."""
    root = Path(tempfile.mkdtemp(prefix="egr-"))  # short: Unix socket paths are limited
    records: list[Record] = []
    table = {"ns_a": tuple(entries)}
    extra = {"resolver": resolver} if resolver is not None else {}
    proxy = EgressProxy(
        root / "sockets",
        lambda ns: table.get(ns, ()),
        limits or Limits(),
        on_record=records.append,
        **extra,
    )
    folder = proxy.bind_dir("ns_a", "r1")
    assert folder is not None
    relay = Relay(str(folder / SOCKET_NAME)).start()
    try:
        yield ProxyRig(proxy, relay, records)
    finally:
        relay.listener.close()
        proxy.stop()
        shutil.rmtree(root, ignore_errors=True)
