"""A replica process this server did not start (adopted from an earlier server on
the same home), with the interface of :class:`~plughost.backends.local.launch.ChildProcess`
that :class:`~plughost.backends.local.replica.ReplicaProcess` drives.

It is not our child, so its exit cannot be waited for and its exit code is unknown: a pidfd
(opened once the recorded start time matched, so a reused pid is never mistaken for it)
becomes readable when it exits, and the event loop watches that. Its exit code reads
:data:`UNKNOWN_EXIT` unless this server killed it (then ``-SIGKILL``), and its output comes
from its output file (:class:`~plughost.backends.local.output.FileTail`), not a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from plughost.backends.local.registry import open_pidfd

UNKNOWN_EXIT = -1


class AdoptedProcess:
    """A running process known by pid and start time; create with :meth:`attach`."""

    stdout: asyncio.StreamReader | None = None
    stderr: asyncio.StreamReader | None = None

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self._pidfd: int | None = pidfd
        self._killed = False
        self.returncode: int | None = None
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._loop.add_reader(pidfd, self._on_exit)

    @classmethod
    def attach(cls, pid: int, start_time: int) -> AdoptedProcess | None:
        """The process if it still runs as recorded, else None."""
        fd = open_pidfd(pid, start_time)
        return None if fd is None else cls(pid, fd)

    def _on_exit(self) -> None:
        self._close()
        self.returncode = -signal.SIGKILL if self._killed else UNKNOWN_EXIT
        if not self._exited.done():
            self._exited.set_result(self.returncode)

    def _close(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def send_signal(self, signum: int) -> None:
        """Signal the process through its pidfd; ProcessLookupError once it has exited."""
        if self._pidfd is None:
            raise ProcessLookupError(self.pid)
        if signum == signal.SIGKILL:
            self._killed = True
        signal.pidfd_send_signal(self._pidfd, signum)

    def kill_group(self) -> None:
        """SIGKILL its process group (it leads its own session) while it is still known."""
        if self._pidfd is None:
            raise ProcessLookupError(self.pid)
        self._killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def forget(self) -> None:
        """Stop watching (the server leaves the process running: keep-on-stop)."""
        self._close()
