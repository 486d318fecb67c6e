"""Client side of one replica process: start, handshake, calls over its Unix socket, stop.
(How the process is launched, its argv and environment: :mod:`.replica_launch`; how it
is signalled and reaped: :mod:`.replica_signals`.)

A replica is ``python -I -m plughost.replica`` in its own session (so its whole process group
can be killed), started in the plugin folder with an environment built only from the spec;
with a sandbox launch (:mod:`plughost.sandbox`) it runs inside bubblewrap, which leads the
session, and gets its listening socket from here.
One persistent connection (:class:`~plughost.backends.channel.ReplicaChannel`) carries
pipelined requests and matches replies to callers by id. When the process dies or the
connection drops, every waiting call fails at once with :class:`ReplicaUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from plughost.backends import client
from plughost.backends.channel import ChannelClosed, ReplicaChannel
from plughost.backends.errors import (
    ReplicaCallError,
    ReplicaCallTimeout,
    ReplicaError,
    ReplicaRequestRefused,
    ReplicaStartError,
    ReplicaUnavailable,
)
from plughost.backends.local.adopted import AdoptedProcess
from plughost.backends.local.handshake import HandshakeFailed, read_line, ready_event
from plughost.backends.local.launch import (
    ChildProcess,
    ReplicaSpec,
    build_replica_command,
    build_replica_env,
    launch_replica,
)
from plughost.backends.local.output import follow_output
from plughost.backends.local.signals import (
    KILL_GRACE_S,
    REAP_TIMEOUT_S,
    kill_and_reap,
    kill_group,
    returncode_within,
    signal_leader,
)
from plughost.backends.stream import CallStream
from plughost.replica.preload import clean as clean_preload
from plughost.replica.protocol import ReplyHead

__all__ = [
    "ReplicaCallError", "ReplicaCallTimeout", "ReplicaError", "ReplicaProcess",
    "ReplicaRequestRefused", "ReplicaSpec", "ReplicaStartError", "ReplicaUnavailable",
    "build_replica_command", "build_replica_env",
]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
HELLO_TIMEOUT_S = 10.0


class ReplicaProcess:
    """A running replica and its connection. Create with :meth:`start`."""

    def __init__(self, spec: ReplicaSpec, process: ChildProcess | AdoptedProcess) -> None:
        self._spec = spec
        self._process = process
        self._output = follow_output(spec.output_path, process.stderr, process.pid)
        self._channel: ReplicaChannel | None = None
        self._calls_in_flight = 0
        self._unavailable_reason: str | None = None
        self._stopping = False
        self._exited = asyncio.Event()
        self._exit_callbacks: list[Callable[[ReplicaProcess], object]] = []
        self._tasks: list[asyncio.Task[None]] = [asyncio.create_task(self._output.run())]
        # what the worker learned while loading the plugin, for the release's next warm
        # spare (plughost.replica.preload): its ready event's "preload"
        self.preload: dict[str, Any] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def start(
        cls, spec: ReplicaSpec, on_spawn: Callable[[int], object] | None = None
    ) -> ReplicaProcess:
        """Launch a replica and return it once it is ready and connected. ``on_spawn(pid)``
        runs as soon as the process exists (the registry records it). Raises ReplicaStartError
        (with the plugin's error text) when it fails to load, exits, or is not ready within
        ``spec.start_timeout_s``; the process group is killed then."""
        process = await launch_replica(spec)
        try:
            replica = cls(spec, process)
        except BaseException:  # its output file could not be opened
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise
        await replica.until_ready(on_spawn=on_spawn)
        return replica

    async def until_ready(
        self, spec: ReplicaSpec | None = None, on_spawn: Callable[[int], object] | None = None
    ) -> None:
        """A replica just launched: handshake, then connection (its process group killed on any
        failure). ``spec``: what it serves from now on (a claimed pool member's release)."""
        self._spec = spec or self._spec
        try:
            if on_spawn is not None:
                on_spawn(self.pid)
            await self._await_handshake()
            await self._connect()
        except BaseException:
            await self.abandon()
            raise

    async def abandon(self) -> None:
        """Kill and reap a replica that never became ready."""
        try:
            await kill_and_reap(self._process)
        finally:
            self._output.close()  # no exit watcher runs yet, which would close it

    async def _await_handshake(self) -> None:
        """Wait for the replica's one-line start-up event; raise ReplicaStartError unless ready."""
        stdout = self._process.stdout
        if stdout is None:
            raise RuntimeError("replica pipe was not opened")
        try:
            line = await read_line(stdout, self._spec.start_timeout_s)
            if not line:
                code = await returncode_within(self._process, REAP_TIMEOUT_S)
                raise HandshakeFailed(f"replica exited with code {code} before becoming ready")
            event = ready_event(line)
        except HandshakeFailed as exc:
            raise self._start_error(str(exc)) from exc
        self.preload = clean_preload(event.get("preload"))

    def _start_error(self, message: str) -> ReplicaStartError:
        """A start error carrying the replica's recent stderr output."""
        try:
            self._output.catch_up()
        except OSError:
            pass
        return ReplicaStartError(message, tuple(self._output.tail))

    @classmethod
    async def adopt(cls, spec: ReplicaSpec, pid: int, start_time: int) -> ReplicaProcess:
        """Take over a running replica an earlier server started: connect and
        check it holds ``spec.secret``. ReplicaStartError when it is gone or fails the
        handshake (it is then left as it is: the caller stops it by its record)."""
        process = AdoptedProcess.attach(pid, start_time)
        if process is None:
            raise ReplicaStartError(f"replica process {pid} is gone")
        replica = cls(spec, process)
        try:
            await replica._connect()
        except BaseException:
            replica.detach()
            raise
        return replica

    def detach(self) -> None:
        """Let go of the replica without stopping it (keep-on-stop, a failed adoption):
        close the connection, read its output once more, stop watching it."""
        self._stopping = True
        self._fail_pending("the server let go of the replica")
        self._close_connection()
        self._output.close()
        if isinstance(self._process, AdoptedProcess):
            self._process.forget()
        for task in self._tasks:
            task.cancel()

    def stop_following_output(self) -> bool:
        """Stop reading the replica's output file where this server is, reading nothing
        more (a takeover: the successor that adopts the replica reads on from there).
        Whether it was following one (a replica writing into a pipe is not)."""
        return self._output.detach()

    async def _hello(self) -> None:
        """Prove the secret to the replica and check its proof (plughost.replica.auth)."""
        secret = self._spec.secret
        if secret is None:
            return
        try:
            proved = await client.hello(self._request, secret, HELLO_TIMEOUT_S)
        except ReplicaUnavailable as exc:
            raise self._start_error(f"no answer to the handshake: {exc}") from None
        if not proved:
            raise self._start_error("the replica did not prove its secret")

    async def _connect(self) -> None:
        """Open the persistent connection (and say hello) and start the exit watcher."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                _, channel = await loop.create_unix_connection(
                    lambda: ReplicaChannel(
                        self._timeout_error, self._connection_lost, self._spec.container,
                        self._spec.call_timeout_s,  # a stopped call's runaway thread
                    ),
                    str(self._spec.socket_path),
                )
        except (OSError, TimeoutError) as exc:
            raise self._start_error(f"cannot connect to the replica socket: {exc}") from exc
        self._channel = channel
        await self._hello()
        if self._spec.container is not None:  # the plugin's container calls come back on it
            try:
                await client.offer_container(self._request, HELLO_TIMEOUT_S)
            except ReplicaUnavailable as exc:
                raise self._start_error(f"no answer to the container offer: {exc}") from None
        self._tasks.append(asyncio.create_task(self._watch_exit()))

    async def stop(self, drain_timeout_s: float | None = None) -> None:
        """SIGTERM the replica, let it finish in-flight calls, then SIGKILL its process group.

        Waits at most ``drain_timeout_s`` (default: the spec's) plus a short grace period for
        a clean exit. Idempotent.
        """
        timeout = self._spec.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        self._stopping = True
        if self._process.returncode is None:
            signal_leader(self._process, signal.SIGTERM)
            await returncode_within(self._process, timeout + KILL_GRACE_S)
        await kill_and_reap(self._process)
        self._fail_pending("replica stopped")
        self._close_connection()
        await asyncio.wait(self._tasks, timeout=REAP_TIMEOUT_S)
        self._remove_socket_file()
        # reaped: every owner hears of the exit now, even if the exit watcher is still slow
        self._exit_happened(self._process.returncode)

    def kill(self) -> None:
        """SIGKILL the replica's process group now; its exit then runs as for a crash."""
        kill_group(self._process)

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

    async def _watch_exit(self) -> None:
        self._exit_happened(await self._process.wait())

    def _exit_happened(self, code: int | None) -> None:
        """Fail waiting calls, then run the exit callbacks; once, whoever sees the exit first
        (the exit watcher, or :meth:`stop` after its reap)."""
        if self._exited.is_set():
            return
        self._output.close()  # its last lines, before anyone reads the release's log
        self._fail_pending(f"replica {self.pid} exited with code {code}")
        self._close_connection()
        self._exited.set()
        callbacks, self._exit_callbacks = self._exit_callbacks, []
        for callback in callbacks:
            self._run_exit_callback(callback)

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
            self.kill()

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
        self.kill()
        return ReplicaCallTimeout(f"no reply within {timeout_s:g} s; the replica was killed")

    # -- calls ----------------------------------------------------------------------------

    async def call_raw(
        self,
        payload: bytes,
        timeout_s: float | None = None,
        checked: bool = False,
        deadline_s: float | None = None,
    ) -> bytes | CallStream:
        """Run the plugin on a JSON request body ``{"inputs": ..., "parameters": ...}``: the
        result's JSON bytes as the replica encoded them (a proxy forwards them undecoded), or
        a CallStream; :func:`plughost.backends.client.call` says what it raises and what
        ``deadline_s`` does. ``checked``: the body is known to be one JSON object."""
        if not checked:
            client.require_json_object(payload)
        timeout = self._spec.call_timeout_s if timeout_s is None else timeout_s
        return await client.call(self._counted_request, payload, timeout, deadline_s=deadline_s)

    async def _counted_request(
        self, body_for: Callable[[int], bytes], timeout_s: float, is_call: bool = True
    ) -> tuple[ReplyHead, bytes]:
        """A call request, counted in :attr:`in_flight` while it waits."""
        self._calls_in_flight += 1
        try:
            return await self._request(body_for, timeout_s, is_call)
        finally:
            self._calls_in_flight -= 1

    async def health(self, timeout_s: float = 5.0) -> bool:
        """Whether the replica answers a health ping with a healthy verdict in time."""
        try:
            return await client.ping(self._request, timeout_s)
        except ReplicaError:
            return False

    # -- state ----------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The replica's process id (also its process group id)."""
        return self._process.pid

    @property
    def in_flight(self) -> int:
        """Calls sent and not yet answered, streams included (health pings excluded)."""
        return self._calls_in_flight + (self._channel.streams if self._channel else 0)

    @property
    def load(self) -> int:
        """What routing compares: calls, streams, and a large weight per stopped call still
        holding the plugin thread (:attr:`ReplicaChannel.busy`)."""
        return self._calls_in_flight + (self._channel.busy if self._channel else 0)

    @property
    def alive(self) -> bool:
        """Whether the process runs and its connection is usable."""
        return self._process.returncode is None and self._unavailable_reason is None

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has exited (negative: killed by that signal)."""
        return self._process.returncode

    @property
    def spec(self) -> ReplicaSpec:
        """The spec this replica was started from."""
        return self._spec

