"""Bounds on the server's event streams (``GET .../logs?follow=true``,
``GET .../status?watch=true``): how many are open, how long each lives, how often a quiet one
speaks.

- :class:`StreamSlots` counts open streams, in all (``PLUGHOST_STREAMS_MAX_OPEN``: past it
  503, the server is full) and per namespace (``PLUGHOST_STREAMS_MAX_PER_NAMESPACE``: past it
  429, the namespace holds its share), both with ``Retry-After``. A slot is taken before the
  response starts and given back when the stream ends, however it ends.
- :func:`bounded` runs a stream's events: a ``: keepalive`` comment after
  ``PLUGHOST_STREAM_KEEPALIVE_S`` without one (a write to a dead client fails, which ends
  the stream and frees its slot), and a clean end (``: end of stream: lifetime reached``)
  after ``PLUGHOST_STREAM_MAX_LIFETIME_S``; clients reconnect. An open idle stream costs
  a task, a queue and its socket, never a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

from plughost.config import Settings
from plughost.errors import PlughostError, ServiceUnavailableError

RETRY_AFTER_S = 5
KEEPALIVE = b": keepalive\n\n"
LIFETIME_END = b": end of stream: lifetime reached, reconnect\n\n"


class TooManyStreamsError(PlughostError):
    """429: the namespace has as many open event streams as it may."""

    status_code = 429
    error_type = "TooManyRequestsError"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details)
        self.headers = {"Retry-After": str(RETRY_AFTER_S)}


class Slot:
    """One open stream's place; :meth:`release` gives it back (idempotent)."""

    __slots__ = ("_namespace_id", "_owner")

    def __init__(self, owner: StreamSlots, namespace_id: str) -> None:
        self._owner: StreamSlots | None = owner
        self._namespace_id = namespace_id

    def release(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            owner._give_back(self._namespace_id)


class StreamSlots:
    """Counts of open streams, in all and per namespace (on the event loop only)."""

    def __init__(self, max_open: int, max_per_namespace: int) -> None:
        self.max_open = max_open
        self.max_per_namespace = max_per_namespace
        self.open = 0
        self.by_namespace: dict[str, int] = {}

    def acquire(self, namespace_id: str) -> Slot:
        """A slot, or the error that refuses the stream."""
        held = self.by_namespace.get(namespace_id, 0)
        if held >= self.max_per_namespace:
            raise TooManyStreamsError(
                f"namespace {namespace_id} has {held} open event streams, the most it may "
                f"(PLUGHOST_STREAMS_MAX_PER_NAMESPACE); close one or retry later",
                {"open": held, "max": self.max_per_namespace},
            )
        if self.open >= self.max_open:
            raise ServiceUnavailableError(
                f"the server has {self.open} open event streams, the most it keeps "
                f"(PLUGHOST_STREAMS_MAX_OPEN); retry later",
                {"open": self.open, "max": self.max_open},
                retry_after_s=RETRY_AFTER_S,
            )
        self.open += 1
        self.by_namespace[namespace_id] = held + 1
        return Slot(self, namespace_id)

    def _give_back(self, namespace_id: str) -> None:
        self.open -= 1
        left = self.by_namespace.get(namespace_id, 0) - 1
        if left > 0:
            self.by_namespace[namespace_id] = left
        else:
            self.by_namespace.pop(namespace_id, None)


# one StreamSlots per runtime (a process runs one server; in-process tests build several)
_SLOTS: dict[int, tuple[weakref.ref[Any], StreamSlots]] = {}


def slots_of(runtime: Any, settings: Settings) -> StreamSlots:
    """The stream counts of ``runtime`` (made on first use from its settings)."""
    entry = _SLOTS.get(id(runtime))
    if entry is None or entry[0]() is not runtime:
        for key in [k for k, (ref, _) in _SLOTS.items() if ref() is None]:
            del _SLOTS[key]
        entry = (
            weakref.ref(runtime),
            StreamSlots(settings.streams_max_open, settings.streams_max_per_namespace),
        )
        _SLOTS[id(runtime)] = entry
    return entry[1]


async def bounded(
    events: AsyncIterator[bytes], slot: Slot, keepalive_s: float, lifetime_s: float
) -> AsyncIterator[bytes]:
    """``events`` (each an encoded SSE event) with keepalives and a lifetime; the slot is
    given back and ``events`` closed when the stream ends, by the client or by us."""
    ends = time.monotonic() + lifetime_s
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            left = ends - time.monotonic()
            if left <= 0:
                yield LIFETIME_END
                return
            if pending is None:
                pending = asyncio.ensure_future(events.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=min(keepalive_s, left))
            if not done:
                if ends - time.monotonic() > 0:
                    yield KEEPALIVE
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            finally:
                pending = None
            yield event
    finally:
        slot.release()
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
