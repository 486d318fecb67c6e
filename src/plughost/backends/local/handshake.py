"""The replica's start-up handshake as the server reads it: one JSON line on the replica's
original stdout (:class:`plughost.replica.main.Handshake`), ``ready`` or ``failed``."""

from __future__ import annotations

import asyncio
from typing import Any

from plughost.replica.protocol import FrameError, decode_object


class HandshakeFailed(Exception):
    """The replica did not say ready; the message says what it said or did instead."""


async def read_line(stdout: asyncio.StreamReader, timeout_s: float) -> bytes:
    """The handshake line (empty: the replica closed its stdout, so it exited)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await stdout.readline()
    except TimeoutError:
        raise HandshakeFailed(f"replica did not become ready within {timeout_s:g} s") from None
    except ValueError as exc:
        raise HandshakeFailed(f"unreadable start-up handshake: {exc}") from exc


def ready_event(line: bytes) -> dict[str, Any]:
    """The ready event the line carries; HandshakeFailed for anything else."""
    try:
        event = decode_object(line)
    except FrameError as exc:
        raise HandshakeFailed(f"unreadable start-up handshake: {exc}") from exc
    if event.get("event") == "failed":
        raise HandshakeFailed(str(event.get("error") or "replica failed to start"))
    if event.get("event") != "ready":
        raise HandshakeFailed(f"unexpected start-up event {event!r}")
    return event
