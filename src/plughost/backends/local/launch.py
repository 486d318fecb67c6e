"""Launching one replica process: its argv and environment, the child process read on the
event loop, and the forwarding of its stderr to logging.

The replica's socket client, which drives a launched process, is
:mod:`plughost.backends.local.replica`.
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from plughost.backends.errors import ReplicaStartError
from plughost.backends.local.output import OutputPump, open_output_file
from plughost.sandbox.bwrap import ENV_MOUNT
from plughost.sandbox.policy import SandboxLaunch

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_LANG = "C.UTF-8"
MAX_SOCKET_PATH_BYTES = 107  # sun_path is 108 bytes including the terminating NUL

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
    prove it (:mod:`plughost.replica.auth`). ``output_path``: the replica writes its output
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
    # a warm spare (plughost.replica.spare) that loads the plugin only once a byte
    # arrives on this inherited descriptor
    hold_fd: int | None = None
    # ... and what it imports before that byte (plughost.replica.preload; JSON)
    preload: str | None = None
    pooled: bool = False  # hold_fd is a pool member's claim descriptor (.pool)
    secret: str | None = field(default=None, repr=False)
    output_path: Path | None = None
    detached: bool = False
    orphan_timeout_s: float = 0.0
    # micro-batching and the request deadline (the replica's --serving JSON,
    # plughost.domain.serve_config); None: neither
    serving: str | None = None
    # answers the plugin's container calls (plughost.domain.container), offered to the
    # replica on the server's connection; None offers none
    container: Callable[[Any], Awaitable[dict[str, Any]]] | None = field(
        default=None, repr=False, compare=False
    )


def build_replica_command(spec: ReplicaSpec, listen_fd: int | None = None) -> list[str]:
    """The argv that starts a replica: the sandbox wrapper (if any), then the worker.

    ``listen_fd``: an inherited listening socket the worker serves on instead of binding
    ``spec.socket_path`` itself.
    """
    prefix = list(spec.sandbox.argv_prefix) if spec.sandbox else []
    plugin_dir = spec.sandbox.plugin_dir if spec.sandbox else str(spec.plugin_dir)
    command = [
        *prefix,
        spec.python,
        "-I",
        "-m",
        "plughost.replica" if spec.hold_fd is None else "plughost.replica.spare",
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
        command += ["--claim-fd" if spec.pooled else "--hold-fd", str(spec.hold_fd)]
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
    if spec.serving is not None:
        command += ["--serving", spec.serving]
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


def _prepare_socket_path(path: Path) -> None:
    """Check the path fits a Unix socket address, create its folder (0700), drop a stale socket."""
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH_BYTES:
        raise ReplicaStartError(
            f"socket path {path} is {size} bytes; Unix sockets allow {MAX_SOCKET_PATH_BYTES}"
        )
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.is_socket():
        path.unlink()


async def launch_replica(spec: ReplicaSpec) -> ChildProcess:
    """Start the replica's process (ReplicaStartError when it cannot be). Its listening
    socket (sandboxed) and its output file are opened here and handed over: each is closed
    here once the child holds its own copy."""
    _prepare_socket_path(spec.socket_path)
    listener: socket.socket | None = None
    output_fd: int | None = None
    secret = (spec.secret + "\n").encode() if spec.secret is not None else None
    try:
        if spec.sandbox is not None:
            listener = bind_listener(spec.socket_path)
        if spec.output_path is not None:
            output_fd = open_output_file(spec.output_path)
        fds = (listener.fileno(),) if listener is not None else ()
        return await ChildProcess.spawn(
            build_replica_command(spec, fds[0] if fds else None),
            cwd=spec.plugin_dir,
            env=build_replica_env(spec),
            pass_fds=fds if spec.hold_fd is None else (*fds, spec.hold_fd),
            stdin_data=secret,
            stderr_fd=output_fd,
        )
    except OSError as exc:
        raise ReplicaStartError(f"cannot launch the replica: {exc}") from exc
    finally:
        if listener is not None:
            listener.close()  # the replica holds its own copy
        if output_fd is not None:
            os.close(output_fd)


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
        pair this object reads as :attr:`stderr`).

        Our ends of the socket pairs go to the event loop, which closes each once (at the
        end of its stream); until then they are closed here on failure."""
        out_ours, out_child = socket.socketpair()
        err_ours, err_child = socket.socketpair() if stderr_fd is None else (None, None)
        try:
            popen = _popen(argv, cwd, env, pass_fds, stdin_data, out_child, err_child, stderr_fd)
        except BaseException:
            _close_sockets(out_ours, err_ours)
            raise
        finally:
            _close_sockets(out_child, err_child)  # the child holds its own copies
        try:
            stdout = await _stream_reader(out_ours)  # out_ours is the loop's from here
        except BaseException:
            _close_sockets(err_ours)
            _kill_and_wait(popen)
            raise
        try:
            stderr = await _stream_reader(err_ours) if err_ours is not None else None
        except BaseException:
            _kill_and_wait(popen)
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

    def kill_group(self) -> None:
        """SIGKILL its process group (it leads its own session); ProcessLookupError once
        the group is gone."""
        os.killpg(self.pid, signal.SIGKILL)


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


class _ReadToEnd(asyncio.StreamReaderProtocol):
    """Feeds a StreamReader and lets the transport close at end of file, as a read pipe's
    does (a stream socket's protocol keeps it half open by default)."""

    def eof_received(self) -> bool:
        super().eof_received()
        return False


async def _stream_reader(sock: socket.socket) -> asyncio.StreamReader:
    """A StreamReader fed by ``sock`` (our end of the child's stdout or stderr) on the loop.

    The socket is the loop's from this call on, whether it succeeds or fails (cancelled
    included): a socket transport closes it once, when its stream ends, and a failed
    connection closes it (asyncio) or closes the descriptor and detaches the socket
    (uvloop). So the ``close()`` below only closes a socket the loop never took.

    :class:`_ReadToEnd` closes the transport at end of file. With the plain
    StreamReaderProtocol, uvloop kept it open, half closed, and nothing closed it: the
    garbage collector did, later, in whatever thread it ran, and closed the number twice
    (libuv's close in the transport's finalizer, then the socket object's own). By then the
    number could be another thread's file: an upload's archive, a directory an intake
    removed, SQLite's database, a replica's output file.

    Not ``connect_read_pipe`` either: when that connection failed under uvloop (a replica
    start cancelled at this await) it closed the descriptor and left the socket object
    holding the number, which the cleanup here then closed a second time.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**16)
    try:
        await loop.create_unix_connection(lambda: _ReadToEnd(reader), sock=sock)
    except BaseException:
        sock.close()
        raise
    return reader


def _popen(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    pass_fds: tuple[int, ...],
    stdin_data: bytes | None,
    stdout: socket.socket,
    stderr: socket.socket | None,
    stderr_fd: int | None,
) -> subprocess.Popen[bytes]:
    """The child process, ``stdin_data`` written into its stdin pipe (both ends closed
    here: the child holds its own copy of the read end)."""
    stdin_read, stdin_write = os.pipe() if stdin_data is not None else (None, None)
    try:
        # vfork and exec: about 0.2 ms on the loop (see ChildProcess)
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL if stdin_read is None else stdin_read,
            stdout=stdout.fileno(),
            stderr=stderr.fileno() if stderr is not None else stderr_fd,
            start_new_session=True,
            pass_fds=pass_fds,
        )
    except BaseException:
        if stdin_write is not None:
            os.close(stdin_write)
        raise
    finally:
        if stdin_read is not None:
            os.close(stdin_read)
    if stdin_write is not None:
        _write_all(stdin_write, stdin_data or b"")
    return popen


def _close_sockets(*socks: socket.socket | None) -> None:
    for sock in socks:
        if sock is not None:
            sock.close()


def _kill_and_wait(popen: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's session and reap it (quick after SIGKILL)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGKILL)
    popen.wait()
