"""The batch worker's pipes, shared by its frame loop and plugin code's container calls.

A reader thread owns stdin: ``container_reply`` frames resolve the calls waiting for them,
every other frame (init, chunk) is queued for the worker's loop (:meth:`PipeLink.next_frame`).
Frames out go through one lock, so a container request written from a plugin thread never
interleaves with a result frame. A call still waiting when stdin ends fails at once.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from concurrent.futures import Future, InvalidStateError
from typing import IO, Any

from plughost.batch.protocol import CONTAINER, CONTAINER_REPLY, read_frame, write_frame
from plughost.domain.container import UNAVAILABLE, error_reply

log = logging.getLogger("plughost.batch.worker")
Frame = tuple[dict[str, Any], bytes]


def _settle(future: Future[Any], reply: dict[str, Any]) -> None:
    try:
        future.set_result(reply)
    except InvalidStateError:  # the plugin stopped waiting
        pass


class PipeLink:
    """stdin read by a thread of its own; frames out under one lock."""

    def __init__(self, stdin: IO[bytes], out: IO[bytes]) -> None:
        self._in = stdin
        self._out = out
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._frames: queue.Queue[Frame | BaseException | None] = queue.Queue()
        self._pending: dict[int, Future[Any]] = {}
        self._ids = itertools.count(1)
        self._ended = False
        self._thread = threading.Thread(target=self._read, name="plughost-pipe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def write(self, header: dict[str, Any], body: bytes = b"") -> None:
        with self._write_lock:
            write_frame(self._out, header, body)

    def next_frame(self) -> Frame | None:
        """The next init or chunk frame; None at the end of stdin. A malformed stream raises
        the reader's ProtocolError here."""
        item = self._frames.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def submit(self, request: dict[str, Any]) -> Future[Any]:
        """Send one container request (any thread); the future gets the server's reply."""
        future: Future[Any] = Future()
        with self._lock:
            if self._ended:
                _settle(future, error_reply(UNAVAILABLE, "the batch job is ending"))
                return future
            cid = next(self._ids)
            self._pending[cid] = future
        try:
            self.write({"type": CONTAINER, "cid": cid, "request": request})
        except (OSError, TypeError, ValueError) as exc:
            with self._lock:
                self._pending.pop(cid, None)
            _settle(future, error_reply(UNAVAILABLE, f"the request cannot be sent: {exc}"))
        return future

    def _read(self) -> None:
        try:
            while (frame := read_frame(self._in)) is not None:
                header = frame[0]
                if header.get("type") == CONTAINER_REPLY:
                    self._resolve(header)
                else:
                    self._frames.put(frame)
        except Exception as exc:  # noqa: BLE001 - handed to the frame loop, which fails on it
            self._frames.put(exc)
        finally:
            self._end()
            self._frames.put(None)

    def _resolve(self, header: dict[str, Any]) -> None:
        cid = header.get("cid")
        with self._lock:
            future = self._pending.pop(cid, None) if isinstance(cid, int) else None
        if future is None:
            return
        reply = header.get("reply")
        _settle(
            future,
            reply
            if isinstance(reply, dict)
            else error_reply(UNAVAILABLE, "the server sent a malformed container reply"),
        )

    def _end(self) -> None:
        with self._lock:
            self._ended = True
            pending, self._pending = self._pending, {}
        for future in pending.values():
            _settle(future, error_reply(UNAVAILABLE, "the server closed the batch worker's input"))
