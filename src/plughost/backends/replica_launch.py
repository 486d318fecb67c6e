"""Launching one replica process: its argv and environment, the child process read on the
event loop, and the forwarding of its stderr to logging.

The replica's socket client, which drives a launched process, is
:mod:`plughost.backends.replica`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from plughost.backends.replica_output import OutputPump
from plughost.sandbox.bwrap import ENV_MOUNT
from plughost.sandbox.policy import SandboxLaunch

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_LANG = "C.UTF-8"

__all__ = [
    "ChildProcess",
    "OutputPump",
    "ReplicaSpec",
    "bind_listener",
    "build_replica_command",
    "build_replica_env",
]


@dataclass(frozen=True)
class ReplicaSpec:
    """Everything needed to launch one replica.

    ``env`` is the replica's whole environment (PATH and LANG get defaults when absent);
    ``python`` is the interpreter, which must have plughost installed. ``sandbox`` wraps the
    process (see :mod:`plughost.sandbox`); its socket is then bound here and inherited, since
    the sandbox cannot see the socket's folder. ``requirements``: the manifest's
    dependencies, checked by the replica before it loads the plugin. ``env_path``: the
    plugin environment's import folder (:mod:`plughost.envs`), appended to ``sys.path``.
    ``kill_on_call_timeout``: a call without a reply in time kills the whole replica (the
    plugin may be stuck in a loop that would otherwise burn CPU forever).

    Issue 14: ``secret`` (hex) is written on the replica's stdin and every connection must
    prove it (:mod:`plughost.worker.auth`). ``output_path``: the replica writes its output
    into this file instead of a pipe to the server (:mod:`.replica_output`), and, with
    ``detached``, outlives the server (no die-with-parent, no parent watch) until no server
    has connected for ``orphan_timeout_s`` (0: never).
    """

    plugin_dir: Path
    socket_path: Path
    init_kwargs: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = 60.0
    call_timeout_s: float = 60.0
    drain_timeout_s: float = 10.0
    python: str = sys.executable
    sandbox: SandboxLaunch | None = None
    requirements: tuple[str, ...] = ()
    env_path: Path | None = None
    kill_on_call_timeout: bool = False
    # issue 17: a warm spare (plughost.worker.spare) that loads the plugin only once a byte
    # arrives on this inherited descriptor
    hold_fd: int | None = None
    # ... and what it imports before that byte (plughost.worker.preload; JSON)
    preload: str | None = None
    secret: str | None = field(default=None, repr=False)
    output_path: Path | None = None
    detached: bool = False
    orphan_timeout_s: float = 0.0


def build_replica_command(spec: ReplicaSpec, listen_fd: int | None = None) -> list[str]:
    """The argv that starts a replica: the sandbox wrapper (if any), then the worker.

    ``listen_fd``: an inherited listening socket the worker serves on instead of binding
    ``spec.socket_path`` itself.
    """
    prefix = list(spec.sandbox.prefix) if spec.sandbox else []
    plugin_dir = spec.sandbox.plugin_dir if spec.sandbox else str(spec.plugin_dir)
    command = [
        *prefix,
        spec.python,
        "-I",
        "-m",
        "plughost.worker" if spec.hold_fd is None else "plughost.worker.spare",
        "--socket",
        str(spec.socket_path),
        "--plugin-dir",
        plugin_dir,
        "--init-kwargs",
        orjson.dumps(spec.init_kwargs).decode(),
        "--drain-timeout",
        repr(float(spec.drain_timeout_s)),
    ]
    if listen_fd is not None:
        command += ["--listen-fd", str(listen_fd)]
    if spec.hold_fd is not None:
        command += ["--hold-fd", str(spec.hold_fd)]
        if spec.preload is not None:
            command += ["--preload", spec.preload]
    if spec.sandbox is not None:
        command += ["--sandbox", spec.sandbox.policy_json]
    if spec.env_path is not None:
        wrapped = spec.sandbox is not None and bool(spec.sandbox.prefix)
        command += ["--env-path", ENV_MOUNT if wrapped else str(spec.env_path)]
    if spec.requirements:
        command += ["--requirements", orjson.dumps(list(spec.requirements)).decode()]
    if spec.secret is not None:
        command += ["--auth", "stdin"]
    if spec.detached:
        command += ["--orphan-timeout", repr(float(spec.orphan_timeout_s))]
    return command


def build_replica_env(spec: ReplicaSpec) -> dict[str, str]:
    """The replica's environment: ``spec.env`` (and the sandbox's additions) plus PATH and
    LANG defaults, nothing inherited."""
    env = dict(spec.env)
    if spec.sandbox is not None:
        env.update(spec.sandbox.env)
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("LANG", DEFAULT_LANG)
    return env


def bind_listener(path: Path) -> socket.socket:
    """A listening Unix socket at ``path`` that only this uid may connect to."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        os.chmod(path, 0o600)
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    return listener


class ChildProcess:
    """A child process whose stdout and stderr are read on the event loop.

    Spawned with :class:`subprocess.Popen` (vfork and exec, about 0.2 ms) rather than the
    loop's own subprocess support: uvloop forks, which copies the server's page tables and
    held its event loop for about 4 ms per replica start, stalling every request in flight
    while deployments ran. A thread per child waits for its exit.
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader | None,
    ) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.stdout: asyncio.StreamReader | None = stdout
        self.stderr: asyncio.StreamReader | None = stderr
        loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = loop.create_future()
        threading.Thread(
            target=self._wait_in_thread, args=(loop,), name=f"replica-wait-{popen.pid}",
            daemon=True,
        ).start()

    @classmethod
    async def spawn(
        cls,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        pass_fds: tuple[int, ...],
        stdin_data: bytes | None = None,
        stderr_fd: int | None = None,
    ) -> ChildProcess:
        """Start ``argv`` in a session of its own. ``stdin_data``: written on its stdin (a
        pipe, closed after it; else /dev/null). ``stderr_fd``: its stderr (else a socket
        pair this object reads as :attr:`stderr`)."""
        out_ours, out_child = socket.socketpair()
        err_ours, err_child = socket.socketpair() if stderr_fd is None else (None, None)
        stdin_read, stdin_write = os.pipe() if stdin_data is not None else (None, None)
        try:
            popen = subprocess.Popen(  # noqa: ASYNC220 - vfork and exec: ~0.2 ms, see the class doc
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL if stdin_read is None else stdin_read,
                stdout=out_child.fileno(),
                stderr=err_child.fileno() if err_child is not None else stderr_fd,
                start_new_session=True,
                pass_fds=pass_fds,
            )
        except BaseException:
            for sock in (out_ours, err_ours):
                if sock is not None:
                    sock.close()
            if stdin_write is not None:
                os.close(stdin_write)
            raise
        finally:
            out_child.close()  # the child holds its own copies
            if err_child is not None:
                err_child.close()
            if stdin_read is not None:
                os.close(stdin_read)
        if stdin_write is not None:
            _write_all(stdin_write, stdin_data or b"")
        try:
            stdout = await _stream_reader(out_ours)
            stderr = await _stream_reader(err_ours) if err_ours is not None else None
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()
            raise
        return cls(popen, stdout, stderr)

    def _wait_in_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        code = self._popen.wait()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(_resolve, self._exited, code)

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has exited (negative: killed by that signal)."""
        return self._popen.returncode

    async def wait(self) -> int:
        """Wait for the process to exit (not for its pipes to close)."""
        return await asyncio.shield(self._exited)

    def send_signal(self, signum: int) -> None:
        """Signal the process; raises ProcessLookupError once it has been reaped."""
        if self._popen.returncode is not None:
            raise ProcessLookupError(self.pid)
        os.kill(self.pid, signum)


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` into a fresh pipe (it fits the pipe's buffer) and close it."""
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass  # the child is already gone; its start fails on its own
    finally:
        os.close(fd)


def _resolve(future: asyncio.Future[int], code: int) -> None:
    if not future.done():
        future.set_result(code)


async def _stream_reader(sock: socket.socket) -> asyncio.StreamReader:
    """A StreamReader fed by ``sock`` (our end of the child's stdout or stderr) on the loop.

    A socket pair, not a pipe (issue 14): uvloop closes a pipe's descriptor itself and then
    closes the pipe's file object too, a second close(2) of the same number that, when
    another thread had just reused it (SQLite's journal, a database socket), closed that
    thread's file instead; the number then went to an accepted client connection and the
    other thread's own close dropped it without an answer. A socket object is detached by
    uvloop instead of closed twice, and closed once by asyncio's own loop."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**16)
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sock)
    except BaseException:
        sock.close()
        raise
    return reader
