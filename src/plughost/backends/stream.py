"""A plugin's streamed answer, as every backend hands it to the data plane.

A handler that returns a generator (or an async generator) streams: the call's result is
then a :class:`CallStream` instead of JSON bytes. Iterating it gives each item's JSON bytes
as the replica sent it; the plugin's exception mid-stream is raised from the iteration as
the backend error it stands for (CallFailed, DeadlineExceeded, ...). ``aclose()`` before the
end cancels the call in the replica.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any


class CallStream:
    """Items of a streamed answer (JSON bytes each); see the module docstring."""

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        item = await self.next_item()
        if item is None:
            raise StopAsyncIteration
        return item

    async def next_item(self) -> bytes | None:
        """The next item's JSON, None at the end; raises the call's error."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop reading; cancels the call if it still streams."""

    async def collect(self) -> bytes:
        """The whole stream as one JSON array (for a caller that cannot stream)."""
        items = [item async for item in self]
        return b"[" + b",".join(items) + b"]"


class ListStream(CallStream):
    """A stream whose items are already all here (a path that could only buffer them)."""

    def __init__(self, items: list[bytes]) -> None:
        self._items = list(items)

    async def next_item(self) -> bytes | None:
        return self._items.pop(0) if self._items else None


class ChannelStream(CallStream):
    """A stream read from a replica channel (:class:`~plughost.backends.channel.ReplyStream`):
    its first item already came with the call's reply; ``error_of(body)`` raises what an
    error frame stands for; ``on_end`` runs once when the stream is over however it ended."""

    def __init__(
        self,
        first: bytes | None,
        frames: Any,
        error_of: Callable[[bytes], None],
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self._first = first
        self._frames = frames  # None: the stream had no items (its end came first)
        self._error_of = error_of
        self._on_end = on_end

    def _ended(self) -> None:
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end()

    async def next_item(self) -> bytes | None:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        if self._frames is None:
            self._ended()
            return None
        try:
            head, body = await self._frames.next()
        except BaseException:
            self._ended()
            raise
        if not head.ok:
            self._ended()
            self._error_of(body)
            raise RuntimeError("error frame without an error")  # error_of always raises
        if head.kind == "item":
            return body[head.result_start : -1] if head.result_start >= 0 else _item_of(body)
        self._ended()
        return None

    async def aclose(self) -> None:
        if self._frames is not None:
            self._frames.close()
        self._ended()


def _item_of(body: bytes) -> bytes:
    import orjson

    return orjson.dumps(orjson.loads(body).get("item"))
