"""Client side of one replica process: launch, handshake, calls over its Unix socket, stop.

A replica is ``python -I -m plughost.worker`` in its own session (so its whole process group
can be killed), started in the plugin folder with an environment built only from the spec;
with a sandbox launch (:mod:`plughost.sandbox`) it runs inside bubblewrap, which leads the
session, and gets its listening socket from here.
One persistent connection (:class:`~plughost.backends.channel.ReplicaChannel`) carries
pipelined requests and matches replies to callers by id. When the process dies or the
connection drops, every waiting call fails at once with :class:`ReplicaUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from plughost.backends.channel import ChannelClosed, ReplicaChannel
from plughost.sandbox.policy import SandboxLaunch
from plughost.worker.protocol import (
    FrameError,
    ReplyHead,
    decode_object,
    encode_raw_call_request,
    encode_request,
)

logger = logging.getLogger(__name__)
output_logger = logging.getLogger("plughost.replica.output")

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_LANG = "C.UTF-8"
MAX_SOCKET_PATH_BYTES = 107  # sun_path is 108 bytes including the terminating NUL
KILL_GRACE_S = 2.0
REAP_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 10.0
EXIT_POLL_S = 0.02
OUTPUT_TAIL_LINES = 50
MAX_OUTPUT_LINE_BYTES = 64 * 1024


@dataclass(frozen=True)
class ReplicaSpec:
    """Everything needed to launch one replica.

    ``env`` is the replica's whole environment (PATH and LANG get defaults when absent);
    ``python`` is the interpreter, which must have plughost installed. ``sandbox`` wraps the
    process (see :mod:`plughost.sandbox`); its socket is then bound here and inherited, since
    the sandbox cannot see the socket's folder. ``requirements``: the manifest's
    dependencies, checked by the replica before it loads the plugin.
    ``kill_on_call_timeout``: a call without a reply in time kills the whole replica (the
    plugin may be stuck in a loop that would otherwise burn CPU forever).
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
    kill_on_call_timeout: bool = False


class ReplicaError(Exception):
    """Base of the errors raised by :class:`ReplicaProcess`."""


class ReplicaStartError(ReplicaError):
    """The replica did not become ready; the message carries the plugin's own error text.

    ``output_tail`` holds the last lines the replica wrote to stderr.
    """

    def __init__(self, message: str, output_tail: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.output_tail = output_tail


class ReplicaCallError(ReplicaError):
    """The plugin (or the replica's request validation) rejected a call."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message


class ReplicaUnavailable(ReplicaError):
    """The replica cannot answer: it died, its connection dropped, or the call timed out."""


class ReplicaCallTimeout(ReplicaUnavailable):
    """A call got no reply in time (the replica was killed if the spec says so)."""


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
        "plughost.worker",
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
    if spec.sandbox is not None:
        command += ["--sandbox", spec.sandbox.policy_json]
    if spec.requirements:
        command += ["--requirements", orjson.dumps(list(spec.requirements)).decode()]
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


def _bind_listener(path: Path) -> socket.socket:
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


class _OutputPump:
    """Forwards the replica's stderr to logging and keeps its last lines."""

    def __init__(self, stream: asyncio.StreamReader, pid: int) -> None:
        self._stream = stream
        self._pid = pid
        self.tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)

    async def run(self) -> None:
        """Read until end of stream, splitting lines (overlong ones are cut into pieces)."""
        pending = b""
        while chunk := await self._stream.read(MAX_OUTPUT_LINE_BYTES):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self._emit(line)
            if len(pending) >= MAX_OUTPUT_LINE_BYTES:
                self._emit(pending)
                pending = b""
        if pending:
            self._emit(pending)

    def _emit(self, raw: bytes) -> None:
        """Log one line and remember it."""
        line = raw.decode("utf-8", "replace").rstrip()
        self.tail.append(line)
        output_logger.info("replica %d: %s", self._pid, line)


class ReplicaProcess:
    """A running replica and its connection. Create with :meth:`start`."""

    def __init__(self, spec: ReplicaSpec, process: _Child) -> None:
        self._spec = spec
        self._process = process
        self._output = _OutputPump(_require(process.stderr), process.pid)
        self._channel: ReplicaChannel | None = None
        self._calls_in_flight = 0
        self._unavailable_reason: str | None = None
        self._stopping = False
        self._exited = asyncio.Event()
        self._exit_callbacks: list[Callable[[ReplicaProcess], object]] = []
        self._tasks: list[asyncio.Task[None]] = [asyncio.create_task(self._output.run())]

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def start(cls, spec: ReplicaSpec) -> ReplicaProcess:
        """Launch a replica and return it once it is ready and connected.

        Raises ReplicaStartError (with the plugin's error text) when it fails to load, exits,
        or is not ready within ``spec.start_timeout_s``; the process group is killed then.
        """
        _prepare_socket_path(spec.socket_path)
        listener: socket.socket | None = None
        try:
            if spec.sandbox is not None:
                listener = _bind_listener(spec.socket_path)
            fds = (listener.fileno(),) if listener is not None else ()
            process = await _Child.spawn(
                build_replica_command(spec, fds[0] if fds else None),
                cwd=spec.plugin_dir,
                env=build_replica_env(spec),
                pass_fds=fds,
            )
        except OSError as exc:
            raise ReplicaStartError(f"cannot launch the replica: {exc}") from exc
        finally:
            if listener is not None:
                listener.close()  # the replica holds its own copy
        replica = cls(spec, process)
        try:
            await replica._await_handshake()
            await replica._connect()
        except BaseException:
            await replica._kill_and_reap()
            raise
        return replica

    async def _await_handshake(self) -> None:
        """Wait for the replica's one-line start-up event; raise ReplicaStartError unless ready."""
        stdout = _require(self._process.stdout)
        timeout = self._spec.start_timeout_s
        try:
            async with asyncio.timeout(timeout):
                line = await stdout.readline()
        except TimeoutError:
            raise self._start_error(f"replica did not become ready within {timeout:g} s") from None
        except ValueError as exc:
            raise self._start_error(f"unreadable start-up handshake: {exc}") from exc
        if not line:
            code = await self._wait_for_returncode(REAP_TIMEOUT_S)
            raise self._start_error(f"replica exited with code {code} before becoming ready")
        try:
            event = decode_object(line)
        except FrameError as exc:
            raise self._start_error(f"unreadable start-up handshake: {exc}") from exc
        if event.get("event") == "failed":
            raise self._start_error(str(event.get("error") or "replica failed to start"))
        if event.get("event") != "ready":
            raise self._start_error(f"unexpected start-up event {event!r}")

    def _start_error(self, message: str) -> ReplicaStartError:
        """A start error carrying the replica's recent stderr output."""
        return ReplicaStartError(message, tuple(self._output.tail))

    async def _connect(self) -> None:
        """Open the persistent connection and start the exit watcher."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                _, channel = await loop.create_unix_connection(
                    lambda: ReplicaChannel(self._timeout_error, self._connection_lost),
                    str(self._spec.socket_path),
                )
        except (OSError, TimeoutError) as exc:
            raise self._start_error(f"cannot connect to the replica socket: {exc}") from exc
        self._channel = channel
        self._tasks.append(asyncio.create_task(self._watch_exit()))

    async def stop(self, drain_timeout_s: float | None = None) -> None:
        """SIGTERM the replica, let it finish in-flight calls, then SIGKILL its process group.

        Waits at most ``drain_timeout_s`` (default: the spec's) plus a short grace period for
        a clean exit. Idempotent.
        """
        timeout = self._spec.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        self._stopping = True
        if self._process.returncode is None:
            self._signal_leader(signal.SIGTERM)
            await self._wait_for_returncode(timeout + KILL_GRACE_S)
        await self._kill_and_reap()
        self._fail_pending("replica stopped")
        self._close_connection()
        await asyncio.wait(self._tasks, timeout=REAP_TIMEOUT_S)
        self._remove_socket_file()

    async def _kill_and_reap(self) -> None:
        """SIGKILL the whole process group and wait (bounded) for the leader's exit."""
        self._kill_group()
        try:
            async with asyncio.timeout(REAP_TIMEOUT_S):
                await self._process.wait()
        except TimeoutError:
            logger.warning("replica %d not reaped after SIGKILL", self.pid)

    def _signal_leader(self, signum: int) -> None:
        """Send ``signum`` to the replica process only."""
        try:
            self._process.send_signal(signum)
        except ProcessLookupError:
            logger.debug("replica %d already gone", self.pid)

    def _kill_group(self) -> None:
        """SIGKILL the replica's process group (it leads its own session)."""
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            logger.debug("process group %d already gone", self.pid)

    async def _wait_for_returncode(self, timeout_s: float) -> int | None:
        """The leader's exit code once it has exited, None on timeout.

        Polls the return code instead of ``Process.wait()``, which also waits for the output
        pipes to close and so can hang while a leftover child holds them.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._process.returncode is None and loop.time() < deadline:
            await asyncio.sleep(EXIT_POLL_S)
        return self._process.returncode

    def _remove_socket_file(self) -> None:
        """Remove the replica's socket file if it is still there."""
        try:
            self._spec.socket_path.unlink()
        except FileNotFoundError:
            pass

    # -- exit notification ----------------------------------------------------------------

    def on_exit(self, callback: Callable[[ReplicaProcess], object]) -> None:
        """Call ``callback(self)`` once the process has exited (at once if it already has)."""
        if self._exited.is_set():
            asyncio.get_running_loop().call_soon(self._run_exit_callback, callback)
        else:
            self._exit_callbacks.append(callback)

    async def wait_closed(self) -> int | None:
        """Wait until the process has exited; its return code."""
        await self._exited.wait()
        return self._process.returncode

    async def _watch_exit(self) -> None:
        """Fail waiting calls when the process exits, then run the exit callbacks."""
        code = await self._process.wait()
        self._fail_pending(f"replica {self.pid} exited with code {code}")
        self._close_connection()
        self._exited.set()
        for callback in self._exit_callbacks:
            self._run_exit_callback(callback)
        self._exit_callbacks.clear()

    def _run_exit_callback(self, callback: Callable[[ReplicaProcess], object]) -> None:
        """Run one exit callback; its failure is logged, never propagated."""
        try:
            callback(self)
        except Exception:
            logger.exception("replica exit callback failed")

    # -- connection -----------------------------------------------------------------------

    def _connection_lost(self, reason: str) -> None:
        """The channel ended: without it the replica is useless, so end it (the exit path
        then runs)."""
        if self._unavailable_reason is None:
            self._unavailable_reason = reason
        if not self._stopping and self._process.returncode is None:
            logger.warning("replica %d: %s; killing it", self.pid, reason)
            self._kill_group()

    def _fail_pending(self, reason: str) -> None:
        """Mark the replica unavailable and fail every waiting request with ``reason``."""
        if self._unavailable_reason is None:
            self._unavailable_reason = reason
        if self._channel is not None:
            self._channel.fail_all(self._unavailable_reason)

    def _close_connection(self) -> None:
        """Close the socket transport (no wait)."""
        if self._channel is not None:
            self._channel.close()

    async def _request(
        self, body_for: Callable[[int], bytes], timeout_s: float, is_call: bool = False
    ) -> tuple[ReplyHead, bytes]:
        """Send one request and wait for its reply.

        Raises ReplicaUnavailable when the replica is gone, the connection drops or no reply
        arrives within ``timeout_s`` (ReplicaCallTimeout for a call).
        """
        if self._unavailable_reason is not None or self._channel is None:
            raise ReplicaUnavailable(self._unavailable_reason or "replica is not connected")
        try:
            return await self._channel.request(body_for, timeout_s, is_call)
        except ChannelClosed as exc:
            raise ReplicaUnavailable(self._unavailable_reason or str(exc)) from None

    def _timeout_error(self, timeout_s: float, is_call: bool) -> ReplicaUnavailable:
        """The error for a request without a reply in time."""
        if is_call:
            return self._call_timed_out(timeout_s)
        return ReplicaUnavailable(f"no reply within {timeout_s:g} s")

    def _call_timed_out(self, timeout_s: float) -> ReplicaCallTimeout:
        """The error for a request without a reply; kills the replica when the spec says so."""
        if not self._spec.kill_on_call_timeout or self._stopping:
            return ReplicaCallTimeout(f"no reply within {timeout_s:g} s")
        logger.warning("replica %d: no reply within %g s; killing it", self.pid, timeout_s)
        self._kill_group()
        return ReplicaCallTimeout(f"no reply within {timeout_s:g} s; the replica was killed")

    # -- calls ----------------------------------------------------------------------------

    async def call(
        self, inputs: dict[str, Any], parameters: dict[str, Any], timeout_s: float | None = None
    ) -> Any:
        """Run the plugin on one request; its decoded JSON result.

        Raises ReplicaCallError when the plugin raised (or rejected the request),
        ReplicaUnavailable when the replica cannot answer, TypeError when inputs or
        parameters are not JSON-serialisable.
        """
        head, body = await self._counted_call(
            lambda request_id: encode_request(request_id, "call", inputs, parameters), timeout_s
        )
        if head.ok and head.result_start >= 0:
            return orjson.loads(memoryview(body)[head.result_start : -1])
        return _result_or_raise(body)

    async def call_raw(
        self, payload: bytes, timeout_s: float | None = None, checked: bool = False
    ) -> bytes:
        """Run the plugin on a JSON request body ``{"inputs": ..., "parameters": ...}``.

        Returns the result's JSON bytes exactly as the replica encoded them, so a proxy can
        forward them without decoding. Raises ReplicaCallError (type ``ValidationError``)
        when ``payload`` is not one JSON object, and like :meth:`call` otherwise.
        ``checked``: the caller already made sure of that (the replica checks again anyway).
        """
        if not checked:
            _require_json_object(payload)
        head, body = await self._counted_call(
            lambda request_id: encode_raw_call_request(request_id, payload), timeout_s
        )
        if head.ok and head.result_start >= 0:
            return body[head.result_start : -1]
        return orjson.dumps(_result_or_raise(body))

    async def _counted_call(
        self, body_for: Callable[[int], bytes], timeout_s: float | None
    ) -> tuple[ReplyHead, bytes]:
        """A call request, counted in :attr:`in_flight` while it waits."""
        self._calls_in_flight += 1
        try:
            timeout = self._spec.call_timeout_s if timeout_s is None else timeout_s
            return await self._request(body_for, timeout, is_call=True)
        finally:
            self._calls_in_flight -= 1

    async def health(self, timeout_s: float = 5.0) -> bool:
        """Whether the replica answers a health ping with a healthy verdict in time."""
        try:
            head, body = await self._request(
                lambda request_id: encode_request(request_id, "health"), timeout_s
            )
        except ReplicaError:
            return False
        return head.ok and decode_object(body).get("result") is True

    # -- state ----------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The replica's process id (also its process group id)."""
        return self._process.pid

    @property
    def in_flight(self) -> int:
        """Calls sent and not yet answered (health pings excluded)."""
        return self._calls_in_flight

    @property
    def alive(self) -> bool:
        """Whether the process runs and its connection is usable."""
        return self._process.returncode is None and self._unavailable_reason is None

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has exited (negative: killed by that signal)."""
        return self._process.returncode

    @property
    def output_tail(self) -> tuple[str, ...]:
        """The last lines the replica wrote to stderr."""
        return tuple(self._output.tail)

    @property
    def spec(self) -> ReplicaSpec:
        """The spec this replica was started from."""
        return self._spec


class _Child:
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
        stderr: asyncio.StreamReader,
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
        cls, argv: list[str], cwd: Path, env: dict[str, str], pass_fds: tuple[int, ...]
    ) -> _Child:
        popen = subprocess.Popen(  # noqa: ASYNC220 - vfork and exec: ~0.2 ms, see the class doc
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            pass_fds=pass_fds,
        )
        try:
            stdout = await _pipe_reader(_require_pipe(popen.stdout))
            stderr = await _pipe_reader(_require_pipe(popen.stderr))
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


def _resolve(future: asyncio.Future[int], code: int) -> None:
    if not future.done():
        future.set_result(code)


def _require_pipe(pipe: IO[bytes] | None) -> IO[bytes]:
    if pipe is None:
        raise RuntimeError("replica pipe was not opened")
    return pipe


async def _pipe_reader(pipe: IO[bytes]) -> asyncio.StreamReader:
    """A StreamReader fed by ``pipe`` on the running loop."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**16)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader


def _require(stream: asyncio.StreamReader | None) -> asyncio.StreamReader:
    """A subprocess pipe that was requested; its absence is a programming error."""
    if stream is None:
        raise RuntimeError("replica pipe was not opened")
    return stream


def _require_json_object(payload: bytes) -> None:
    """Raise ReplicaCallError(ValidationError) unless ``payload`` is exactly one JSON object."""
    try:
        decode_object(payload)
    except FrameError as exc:
        raise ReplicaCallError("ValidationError", f"request body: {exc}") from exc


def _result_or_raise(body: bytes) -> Any:
    """The result of a decoded reply, or its error raised as ReplicaCallError."""
    try:
        reply = decode_object(body)
    except FrameError as exc:
        raise ReplicaUnavailable(f"unreadable reply: {exc}") from exc
    if reply.get("ok") is True:
        return reply.get("result")
    error = reply.get("error")
    if not isinstance(error, dict):
        error = {}
    raise ReplicaCallError(str(error.get("type") or "Error"), str(error.get("message") or ""))
