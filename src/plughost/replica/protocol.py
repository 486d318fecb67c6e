"""The replica wire protocol: framing and reply encoding, shared by the worker and its client.

A frame is a 4-byte big-endian length followed by that many bytes of an orjson-encoded JSON
object. Requests are ``{"id": int, "op": "call"|"health", "inputs": {...}, "parameters":
{...}}``; replies are ``{"id": int, "ok": true, "result": <json>}`` or ``{"id": int, "ok":
false, "error": {"type": str, "message": str}}``.

A call may carry ``"timeout": seconds``: the worker answers it with a ``GatewayTimeoutError``
once that long has passed, cancelling its work (a plain handler's thread cannot be stopped:
that error then says ``"running": true``, and an ``end`` frame follows once the thread is
free). ``{"id": 0, "op": "cancel", "call": n}`` cancels call ``n`` the same way; it is answered
by call ``n``'s own (error) reply. A handler that returns a generator streams: one
``{"id": n, "ok": true, "item": <json>}`` frame per item, then ``{"id": n, "ok": true,
"end": true}`` or an error reply. A reply answering the first call of a micro-batch names the
batch's size: ``{"id": n, "ok": true, "batch": k, "result": ...}``.

Replies are always written with ``id`` first and ``ok`` second, and a successful reply ends
with the result followed by the closing brace. The client relies on that layout to hand the
result's bytes to an HTTP response without decoding them (:func:`split_reply`).
"""

from __future__ import annotations

import asyncio
import re
import struct
from dataclasses import dataclass
from typing import Any

import orjson

HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 512 * 1024 * 1024
ENCODE_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

_REPLY_PREFIX = re.compile(rb'^\{"id":(-?\d+|null),"ok":(true|false),(?:"batch":(\d+),)?')
_REQUEST_ID = re.compile(rb'^\{"id":(-?\d+),')


class FrameError(Exception):
    """A frame on the wire is malformed (bad length, truncated, not a JSON object)."""


class ResultEncodingError(TypeError):
    """A plugin returned a value that cannot be represented as JSON."""


RESULT, ITEM, END = "result", "item", "end"
CANCEL_OP = "cancel"
TIMEOUT_ERROR = "GatewayTimeoutError"  # a call past its deadline (error type of the reply)
CANCELLED_ERROR = "CancelledError"  # a call cancelled by its caller


@dataclass(frozen=True, slots=True)
class ReplyHead:
    """The fields of a reply that can be read without decoding it.

    ``result_start`` is the offset of the result's first byte in a successful reply laid out
    as this module writes it (the result then spans ``body[result_start:-1]``), or -1 when
    the body must be decoded to reach the result or error.
    """

    request_id: int | None
    ok: bool
    result_start: int
    kind: str = RESULT  # RESULT, ITEM (one item of a stream) or END (a stream's end)
    batch: int = 0  # the size of the micro-batch this reply leads (0: not a batch's first)
    stream: Any = None  # the channel's stream of the rest of a streamed reply (its own use)


def encode_frame(body: bytes) -> bytes:
    """Prefix ``body`` with its length; raises FrameError when it exceeds MAX_FRAME_BYTES."""
    if len(body) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
    return HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """Read one frame body; None on a clean end of stream before a header.

    Raises FrameError on an oversized length or a stream that ends inside a frame.
    """
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise FrameError("stream ended inside a frame header") from exc
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise FrameError(f"frame length {length} exceeds the {MAX_FRAME_BYTES} byte limit")
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise FrameError(f"stream ended after {len(exc.partial)} of {length} bytes") from exc


class FrameBuffer:
    """Splits a byte stream into frame bodies, for a protocol's ``data_received``."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The frame bodies completed by ``data``, in order; a partial frame is kept.

        Raises FrameError on a length above MAX_FRAME_BYTES (the stream is then unusable).
        """
        buffer = self._buffer
        source: bytes | bytearray = data
        if buffer:
            buffer += data
            source = buffer
        frames: list[bytes] = []
        pos, size = 0, len(source)
        while size - pos >= HEADER.size:
            (length,) = HEADER.unpack_from(source, pos)
            if length > MAX_FRAME_BYTES:
                raise FrameError(f"frame length {length} exceeds the {MAX_FRAME_BYTES} byte limit")
            end = pos + HEADER.size + length
            if end > size:
                break
            frames.append(bytes(source[pos + HEADER.size : end]))
            pos = end
        if source is buffer:
            del buffer[:pos]
        elif pos < size:
            buffer += data[pos:]
        return frames

    @property
    def partial(self) -> int:
        """Bytes of an incomplete frame waiting for the rest."""
        return len(self._buffer)


class FrameOutbox:
    """Frames queued during one turn of the event loop, written at its end in one write.

    At high concurrency many requests or replies then share one system call; both ends of
    the replica socket send through one of these.
    """

    __slots__ = ("_frames", "_handle", "_loop", "_transport")

    def __init__(self) -> None:
        self._frames: list[bytes] = []
        self._handle: asyncio.Handle | None = None
        self._transport: asyncio.WriteTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, transport: asyncio.WriteTransport) -> None:
        """Write to ``transport`` from now on; called on its event loop (a protocol's
        ``connection_made``), which is kept: asking for the running loop on every frame costs
        a ``getpid`` system call on Python 3.11."""
        self._transport = transport
        self._loop = asyncio.get_running_loop()

    def put(self, body: bytes) -> None:
        """Queue ``body`` as one frame; raises FrameError (queuing nothing) when oversized."""
        self._frames.append(encode_frame(body))
        if self._handle is None:
            loop = self._loop or asyncio.get_running_loop()
            self._handle = loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is queued now (a closing transport drops it)."""
        self._handle = None
        transport = self._transport
        if not self._frames or transport is None or transport.is_closing():
            return
        data = self._frames[0] if len(self._frames) == 1 else b"".join(self._frames)
        self._frames.clear()
        transport.write(data)

    def discard(self) -> None:
        """Drop what is queued and the pending write (the connection is gone)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._frames.clear()


def decode_object(body: bytes) -> dict[str, Any]:
    """Decode a frame body that must hold a JSON object; raises FrameError otherwise."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"frame is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise FrameError(f"frame holds a JSON {type(value).__name__}, not an object")
    return value


def recover_request_id(body: bytes) -> int | None:
    """The id of a request whose body could not be decoded, when its prefix still shows it."""
    match = _REQUEST_ID.match(body)
    return int(match.group(1)) if match else None


def _fallback_default(value: Any) -> Any:
    """orjson's ``default=`` hook: array-likes, pydantic models and sets become JSON values."""
    if isinstance(value, (set, frozenset)):
        return list(value)
    for method in ("model_dump", "tolist"):
        convert = getattr(value, method, None)
        if callable(convert):
            return convert(mode="json") if method == "model_dump" else convert()
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def encode_result(value: Any) -> bytes:
    """Encode a plugin's return value as JSON bytes.

    numpy arrays and scalars are encoded natively; objects with ``model_dump()`` (pydantic)
    or ``tolist()`` and sets are converted. Raises ResultEncodingError for anything else.
    """
    try:
        return orjson.dumps(value, default=_fallback_default, option=ENCODE_OPTIONS)
    except (orjson.JSONEncodeError, TypeError, ValueError) as exc:
        raise ResultEncodingError(f"result is not JSON serializable: {exc}") from exc


def encode_ok_reply(request_id: int, result_json: bytes, batch: int = 0) -> bytes:
    """The body of a successful reply around already-encoded result bytes; ``batch``: the
    size of the micro-batch whose first call this reply answers."""
    if batch:
        return b'{"id":%d,"ok":true,"batch":%d,"result":%b}' % (request_id, batch, result_json)
    return b'{"id":%d,"ok":true,"result":%b}' % (request_id, result_json)


def encode_item_reply(request_id: int, item_json: bytes) -> bytes:
    """One item of a streamed reply."""
    return b'{"id":%d,"ok":true,"item":%b}' % (request_id, item_json)


def encode_end_reply(request_id: int) -> bytes:
    """The end of a streamed reply (also: a timed-out call's thread is free again)."""
    return b'{"id":%d,"ok":true,"end":true}' % request_id


def encode_cancel_request(call_id: int) -> bytes:
    """Ask the worker to cancel call ``call_id`` of this connection."""
    return b'{"id":0,"op":"cancel","call":%d}' % call_id


# ``error.origin`` of a reply about the request itself (not JSON, inputs not an object):
# the host's side, never the plugin's; plugin exceptions carry no origin
WORKER_ORIGIN = "worker"


def encode_error_reply(
    request_id: int | None,
    type_name: str,
    message: str,
    origin: str | None = None,
    running: bool = False,
) -> bytes:
    """The body of an error reply; ``request_id`` None when the request's id is unknown;
    ``origin``: :data:`WORKER_ORIGIN` when the worker refused the request itself;
    ``running``: the call's plain handler still runs in the plugin thread."""
    error: dict[str, Any] = {"type": type_name, "message": message}
    if origin is not None:
        error["origin"] = origin
    if running:
        error["running"] = True
    return orjson.dumps({"id": request_id, "ok": False, "error": error})


def error_running(body: bytes) -> bool:
    """Whether an error reply says the call's handler still runs in the plugin thread."""
    return b'"running":true' in body


def encode_request(request_id: int, op: str, inputs: Any = None, parameters: Any = None) -> bytes:
    """The body of a request; raises TypeError when inputs or parameters are not JSON."""
    return orjson.dumps(
        {"id": request_id, "op": op, "inputs": inputs or {}, "parameters": parameters or {}},
        option=ENCODE_OPTIONS,
    )


def encode_raw_call_request(
    request_id: int, payload: bytes, timeout_s: float | None = None
) -> bytes:
    """A call request whose ``body`` is a caller-supplied JSON object, spliced in undecoded.

    The worker reads ``inputs`` and ``parameters`` from that object; the splice keeps the
    client from decoding and re-encoding a request it only forwards. ``timeout_s``: the
    call's deadline, in seconds from now.
    """
    if timeout_s is not None:
        return b'{"id":%d,"op":"call","timeout":%.4f,"body":%b}' % (
            request_id, max(timeout_s, 0.0001), payload)
    return b'{"id":%d,"op":"call","body":%b}' % (request_id, payload)


def split_reply(body: bytes) -> ReplyHead:
    """Read a reply's id and outcome from its prefix, decoding the whole body only if needed.

    Raises FrameError when the body is not a reply object.
    """
    match = _REPLY_PREFIX.match(body)
    if match:
        raw_id = match.group(1)
        request_id = None if raw_id == b"null" else int(raw_id)
        ok = match.group(2) == b"true"
        if not ok:
            return ReplyHead(request_id, False, -1)
        batch = int(match.group(3)) if match.group(3) else 0
        end = match.end()
        if body.endswith(b"}"):
            if body.startswith(b'"result":', end):
                return ReplyHead(request_id, True, end + 9, RESULT, batch)
            if body.startswith(b'"item":', end):
                return ReplyHead(request_id, True, end + 7, ITEM)
            if body.startswith(b'"end":true}', end):
                return ReplyHead(request_id, True, -1, END)
    reply = decode_object(body)
    request_id = reply.get("id")
    if request_id is not None and not isinstance(request_id, int):
        raise FrameError(f"reply id {request_id!r} is not an integer")
    kind = ITEM if "item" in reply else END if reply.get("end") is True else RESULT
    return ReplyHead(request_id, reply.get("ok") is True, -1, kind)


# -- container calls: requests from the replica to the server, on the same connection ----------
# The server offers them with a ``{"id", "op": "container_offer"}`` request (answered true);
# from then on the replica may send ``{"cid": k, "request": {...}}`` frames on that connection
# and the server answers each with ``{"cid": k, "reply": {...}}`` (plughost.domain.container).
# ``cid`` numbers are the replica's own, apart from the server's request ids.
CONTAINER_OFFER_OP = "container_offer"
CONTAINER_PREFIX = b'{"cid":'


def encode_container_frame(cid: int, key: str, value: Any) -> bytes:
    """A container request (``key`` "request") or reply (``key`` "reply"), ``cid`` first so
    either end can tell it from the other traffic by its prefix (:data:`CONTAINER_PREFIX`)."""
    return orjson.dumps({"cid": cid, key: value}, option=ENCODE_OPTIONS)


def decode_container_frame(body: bytes, key: str) -> tuple[int, Any]:
    """The ``cid`` and the ``key`` member of a container frame; FrameError when malformed."""
    frame = decode_object(body)
    cid = frame.get("cid")
    if not isinstance(cid, int) or isinstance(cid, bool):
        raise FrameError("container frame has no integer cid")
    return cid, frame.get(key)
