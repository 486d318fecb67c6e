"""A replica's output (its stderr, which also carries its tagged stdout and logging lines),
forwarded line by line to the logger ``plughost.replica.output`` (:mod:`plughost.logs.capture`
hands the lines to the release's log store) with its last lines kept for start errors.

Two sources. A replica that dies with the server writes into a socket pair the server reads
(:class:`OutputPump`). A replica that outlives the server cannot write into a
socket whose reader may be gone (its writes would fail, its plugin's prints raise), so it
writes into a file in the server's home, ``<home>/replicas/<replica id>.out``, opened by the
server and inherited (the sandbox never sees the folder), and the server reads that file
(:class:`FileTail`): every :data:`POLL_S`, and once more when the replica exits. How far it
has read is kept beside it (``.pos``), so the next server, adopting the replica, goes on
from there: the lines written while no server ran reach the log store too, none twice. The
file is emptied once read past :data:`ROTATE_BYTES` (the replica appends, so it goes on at
the new end); a line written in the instant between the last read and that truncation is
lost, which is the one gap.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from pathlib import Path

from plughost.logs.tags import split_tag
from plughost.logs.terminal import escape_controls

output_logger = logging.getLogger("plughost.replica.output")

OUTPUT_TAIL_LINES = 50
MAX_OUTPUT_LINE_BYTES = 64 * 1024
POLL_S = 0.1
ROTATE_BYTES = 8 * 1024 * 1024
READ_BYTES = 1024 * 1024


class LineSplitter:
    """Splits chunks into lines (overlong ones cut into pieces), logs each, keeps the last."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
        self._pending = b""

    def feed(self, chunk: bytes) -> None:
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        for line in lines:
            self._emit(line)
        if len(self._pending) >= MAX_OUTPUT_LINE_BYTES:
            self._emit(self._pending)
            self._pending = b""

    def finish(self) -> None:
        if self._pending:
            self._emit(self._pending)
            self._pending = b""

    def _emit(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip()
        # the stream tag stays on the logged line; the tail (start errors) is escaped as the
        # log store's lines are (plughost.logs.terminal)
        self.tail.append(escape_controls(split_tag(line)[1][:4096]))
        output_logger.info("replica %d: %s", self.pid, line)


class OutputPump(LineSplitter):
    """Forwards a stream (the read end of the replica's stderr) until it ends."""

    def __init__(self, stream: asyncio.StreamReader, pid: int) -> None:
        super().__init__(pid)
        self._stream = stream

    async def run(self) -> None:
        while chunk := await self._stream.read(MAX_OUTPUT_LINE_BYTES):
            self.feed(chunk)
        self.finish()

    def catch_up(self) -> None:
        """Nothing to do: the stream is read as it comes."""

    def close(self) -> None:
        """Nothing to do: the stream ends with the process."""

    def detach(self) -> bool:
        """Nothing to let go: a pipe is read to its end. Never a file reader: False."""
        return False


def open_output_file(path: Path) -> int:
    """The replica's end of its output file: append-only, 0600, created if missing."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


def position_path(path: Path) -> Path:
    return path.with_suffix(".pos")


class FileTail(LineSplitter):
    """Reads a replica's output file from where the last reader stopped (see the module).

    It owns its two descriptors (the output file and its saved position) and is the only
    code that closes them, once, in :meth:`close` or :meth:`detach`."""

    def __init__(self, path: Path, pid: int) -> None:
        super().__init__(pid)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self._pos_fd = os.open(
                position_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        except BaseException:
            os.close(self._fd)
            raise
        self._closed = False
        try:
            self._offset = self._saved_offset()
        except BaseException:
            self._release()
            raise

    @property
    def closed(self) -> bool:
        """Whether this reader stopped (its descriptors are closed)."""
        return self._closed

    def _saved_offset(self) -> int:
        raw = os.pread(self._pos_fd, 32, 0).split(b"\n")[0]
        try:
            offset = int(raw)
        except ValueError:
            return 0
        return offset if 0 <= offset <= os.fstat(self._fd).st_size else 0

    def _save_offset(self) -> None:
        data = b"%d\n" % self._offset
        os.pwrite(self._pos_fd, data.ljust(32, b" "), 0)

    def catch_up(self) -> None:
        """Read and forward everything written so far (a local file: no wait worth a thread)."""
        if self._closed:
            return
        read_any = False
        while chunk := os.pread(self._fd, READ_BYTES, self._offset):
            self._offset += len(chunk)
            self.feed(chunk)
            read_any = True
        if self._offset >= ROTATE_BYTES:
            os.ftruncate(self._fd, 0)
            self._offset = 0
            read_any = True
        if read_any:
            self._save_offset()

    async def run(self) -> None:
        """Poll the file until :meth:`close` or :meth:`detach`."""
        try:
            while not self._closed:
                try:
                    self.catch_up()
                except OSError as exc:
                    output_logger.warning("replica %d: output file unreadable: %s", self.pid, exc)
                    return
                await asyncio.sleep(POLL_S)
        finally:
            self.finish()

    def close(self) -> None:
        """Read what is left, then stop (the file stays for the next reader). Idempotent."""
        if self._closed:
            return
        try:
            self.catch_up()
        except OSError as exc:
            output_logger.warning("replica %d: output file unreadable: %s", self.pid, exc)
        self._release()

    def detach(self) -> bool:
        """Let go of the file where this reader is, reading nothing more, and close both
        descriptors: the saved position is where the next reader (a successor server
        adopting the replica) goes on. Whether it was still reading. Idempotent."""
        if self._closed:
            return False
        self._release()
        return True

    def _release(self) -> None:
        """Close both descriptors, once: the flag goes first, so no path closes them twice,
        and each is closed even when the other fails."""
        self._closed = True
        fds, self._fd, self._pos_fd = (self._fd, self._pos_fd), -1, -1
        for fd in fds:
            try:
                os.close(fd)
            except OSError as exc:  # EBADF: another piece of code closed our descriptor
                output_logger.error("replica %d: closing its output file: %s", self.pid, exc)


def follow_output(
    output_path: Path | None, stderr: asyncio.StreamReader | None, pid: int
) -> OutputPump | FileTail:
    """The reader of a replica's output: its output file when it writes to one (a replica
    that outlives the server does), else the stderr pipe, which must then be open."""
    if output_path is not None:
        return FileTail(output_path, pid)
    if stderr is None:
        raise RuntimeError("replica pipe was not opened")
    return OutputPump(stderr, pid)

