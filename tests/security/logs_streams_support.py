"""Support for tests/security/test_logs_streams_surface.py: the plugins that print terminal
control and huge lines, the one that stays starting (its status never final), raw-socket
event streams, and the server's resident memory."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

from support import PIPELINE, zip_bytes

HUGE_BYTES = 10 * 1024 * 1024
# any raw terminal control a reader could receive (tab excepted)
RAW_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

# printed by the plugin (source text: the escapes are Python's, in the plugin's file)
TERM_REALTIME = r"""
import logging
import sys

HOSTILE = "clear\x1b[2J\x1b[Hmid\x1b]0;pwned title\x07end\r\x08\x7f\x9b31m\u202eevil\ttab"
log = logging.getLogger("term")


class Service:
    def run_inference(self, inputs, parameters):
        if inputs.get("hostile"):
            print("stdout " + HOSTILE)
            print("stderr " + HOSTILE, file=sys.stderr)
            log.warning("logged %s", HOSTILE)
        if inputs.get("huge"):
            sys.stdout.write("y" * HUGE_BYTES + "\n")
            sys.stdout.write("z" * HUGE_BYTES)
            sys.stdout.flush()
            print("")
            print("after huge")
        return {"ok": True}


def get_inference_service(**kwargs):
    return Service()
""".replace("HUGE_BYTES", str(HUGE_BYTES))

SLOW_REALTIME = """
import time


class Service:
    def __init__(self):
        time.sleep(3600)

    def run_inference(self, inputs, parameters):
        return {}


def get_inference_service(**kwargs):
    return Service()
"""


def plugin_zip(name: str, realtime: str) -> bytes:
    manifest = f'feature_extractor_name = "{name}"\nversion = "1.0.0"\n'
    return zip_bytes({"manifest.py": manifest, "pipeline.py": PIPELINE, "realtime.py": realtime})


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


@dataclass
class RawStream:
    """One event stream on its own socket, its response head read, its body left unread."""

    status: int
    head: bytes
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode()
        return None

    async def body_until_closed(self, timeout: float) -> bytes:
        """Everything the server sends until it closes the connection."""
        chunks = []
        async with asyncio.timeout(timeout):
            while chunk := await self.reader.read(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.writer.close()


async def open_stream(port: int, path: str, key: str, timeout: float = 120.0) -> RawStream:
    """GET ``path`` as an event stream (``Connection: close``: the server closes the socket
    when it ends the stream); returns once the response head came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        "Accept: text/event-stream\r\nConnection: close\r\n\r\n"
    )
    writer.write(request.encode())
    await writer.drain()
    async with asyncio.timeout(timeout):
        head = await reader.readuntil(b"\r\n\r\n")
    return RawStream(int(head.split(b" ", 2)[1]), head, reader, writer)
