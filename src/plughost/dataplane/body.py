"""The one capped read of an ASGI request body, and its limit, for every call that carries a
plugin's input: the fast path's ``POST /inference/...``, FastAPI's ``POST /v1/inference``
(through :mod:`plughost.api.streams` with the same limit) and a peer's forwarded call."""

from __future__ import annotations

from starlette.types import Message, Receive

from plughost.errors import BadRequestError, PayloadTooLargeError

MAX_BODY_BYTES = 64 * 1024 * 1024  # one call's input; a replica reads it whole


class ClientDisconnected(BadRequestError):
    """The client went away before its body was complete (nobody reads the answer)."""

    def __init__(self) -> None:
        super().__init__("client disconnected")


async def read_capped(receive: Receive, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body of the request ``receive`` belongs to.

    Raises PayloadTooLargeError as soon as more than ``limit`` bytes came (the rest is never
    read, so a hostile sender cannot make it buffer more than ``limit`` plus one chunk), and
    ClientDisconnected when the client leaves mid-body."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
