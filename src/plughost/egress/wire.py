"""The HTTP the egress proxy speaks: the request head it reads, the refusal it answers; its
limits, and what it logs of a connection."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

from plughost.egress.policy import PatternError, split_host_port

DROPPED_HEADERS = ("proxy-", "connection:", "keep-alive:")


class Refused(Exception):
    """A request the proxy answers with ``status`` and ``reason`` (and closes)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def parse_head(lines: list[str]) -> tuple[str, str, str, int, bytes | None]:
    """``(method, target, host, port, request)`` of a request head; ``request`` is the head
    to send upstream for an absolute-form request (None for CONNECT)."""
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise Refused(400, "not an HTTP request")
    method, target, _ = parts
    if method == "CONNECT":
        try:
            host, port = split_host_port(target)
        except PatternError as exc:
            raise Refused(400, str(exc)) from exc
        if port is None or not host:
            raise Refused(400, "CONNECT needs host:port")
        return method, target, host, port, None
    url = urlsplit(target)
    if url.scheme != "http" or not url.hostname:
        raise Refused(400, "only http:// URLs in absolute form; https goes through CONNECT")
    try:
        port = url.port or 80
    except ValueError as exc:
        raise Refused(400, "bad port") from exc
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    headers = [line for line in lines[1:] if line and not line.lower().startswith(DROPPED_HEADERS)]
    head = "\r\n".join([f"{method} {path} HTTP/1.1", *headers, "Connection: close", "", ""])
    return method, target, url.hostname, port, head.encode("latin-1")


async def answer(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    text = " ".join(reason.split())[:300]
    body = (text + "\n").encode("utf-8", "replace")
    phrase = text.encode("latin-1", "replace").decode("latin-1")
    writer.write(
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nX-Plughost-Egress: refused\r\nConnection: close"
        "\r\n\r\n".encode("latin-1")
        + body
    )
    await writer.drain()


@dataclass
class Limits:
    max_connections: int = 32  # open connections per namespace
    idle_timeout_s: float = 60.0
    connect_timeout_s: float = 10.0


@dataclass
class Record:
    """What is logged of one connection."""

    namespace: str
    caller: str
    method: str = "?"
    destination: str = "?"
    decision: str = "refused"
    reason: str = ""
    sent: int = 0
    received: int = 0

    def line(self) -> str:
        return (
            f"egress namespace={self.namespace} caller={self.caller} {self.method} "
            f"{self.destination} {self.decision}"
            + (f" ({self.reason})" if self.reason else "")
            + f" sent={self.sent} received={self.received}"
        )
