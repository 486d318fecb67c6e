"""Frames between the server and a batch worker over the worker's stdin and stdout.

A frame is ``!II`` (JSON length, body length), a JSON header, then a body: an Arrow IPC
stream (the rows) or nothing. Arrow both ways, never pickle: the server must not
deserialise objects made by plugin code.

Server -> worker: ``{"type": "chunk", "chunk": k}`` + rows (with the row-id column), or
``{"type": "block", "chunks": [[k, rows], ...]}`` + the rows of consecutive chunks as one
table (a frame's fixed costs shared by several chunks of a fast plugin).
Worker -> server: ``{"type": "ready"}`` once the pipeline is loaded, ``{"type": "fatal",
"message": ...}`` when it cannot be, per chunk ``{"type": "result", "chunk": k,
"errors": [...], "limit": n | null}`` + the output rows, and per block ``{"type":
"results", "chunks": [{"chunk": k, "errors", "limit", "bytes": n}, ...]}`` + each chunk's
output rows as its own Arrow stream of ``bytes`` bytes (none when empty), in order.

Container calls of plugin code (:mod:`plughost.domain.container`) may interleave with those,
while the worker runs ``init`` or a chunk: worker -> server ``{"type": "container", "cid": k,
"request": {...}}``, answered server -> worker ``{"type": "container_reply", "cid": k,
"reply": {...}}`` (``cid`` numbers are the worker's own).
"""

from __future__ import annotations

import io
import struct
from typing import IO, Any

import orjson
import pyarrow as pa

HEADER = struct.Struct("!II")
CONTAINER = "container"
CONTAINER_REPLY = "container_reply"
ROW_ID = "__plughost_row__"
MAX_HEADER_BYTES = 16 << 20


class ProtocolError(Exception):
    """The peer sent something that is not a frame, or closed mid-frame."""


def table_to_ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def ipc_to_table(data: bytes) -> pa.Table:
    with pa.ipc.open_stream(pa.py_buffer(data)) as reader:
        return reader.read_all()


def encode_frame(header: dict[str, Any], body: bytes = b"") -> bytes:
    head = orjson.dumps(header)
    return HEADER.pack(len(head), len(body)) + head + body


def write_frame(out: IO[bytes], header: dict[str, Any], body: bytes = b"") -> None:
    out.write(encode_frame(header, body))
    out.flush()


def _read_exact(src: IO[bytes], size: int) -> bytes:
    parts: list[bytes] = []
    left = size
    while left:
        piece = src.read(left)
        if not piece:
            raise ProtocolError("stream closed mid-frame")
        parts.append(piece)
        left -= len(piece)
    return b"".join(parts)


def read_frame(src: IO[bytes]) -> tuple[dict[str, Any], bytes] | None:
    """The next frame, or None at a clean end of stream."""
    first = src.read(HEADER.size)
    if not first:
        return None
    raw = first + _read_exact(src, HEADER.size - len(first)) if len(first) < HEADER.size else first
    head_len, body_len = HEADER.unpack(raw)
    if head_len > MAX_HEADER_BYTES:
        raise ProtocolError(f"frame header of {head_len} bytes")
    header = orjson.loads(_read_exact(src, head_len))
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not a JSON object")
    return header, _read_exact(src, body_len)


def parse_header(raw: bytes) -> tuple[int, int]:
    head_len, body_len = HEADER.unpack(raw)
    if head_len > MAX_HEADER_BYTES:
        raise ProtocolError(f"frame header of {head_len} bytes")
    return head_len, body_len
