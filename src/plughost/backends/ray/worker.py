"""Inside a Serve replica: the plugin's sandboxed worker process and the way in to it.

A Serve replica of the Ray backend does not run plugin code itself. It starts the same
worker process a local replica is (``python -I -m plughost.replica`` under bubblewrap,
seccomp, rlimits, its own uid, a scrubbed environment: :mod:`plughost.sandbox`), on its own
node, through the same launch (:class:`~plughost.backends.local.replica.ReplicaProcess`), and
offers the server two ways to it:

- the worker's Unix socket (0600, in a 0700 folder), for a server on the same node;
- a TCP port on the node's address, a relay to that socket that first asks for proof of the
  replica's secret (:func:`answer`): the relay sends a random nonce, the client must answer
  ``HMAC-SHA256(secret, nonce)``. The secret is made here and reaches the server only
  through Ray (the replica directory), so nothing unauthenticated listens on the network.

The same port, with the mode byte ``L``, streams the worker's output lines (``[pid, line]``
JSON, one per line) to the server, which keeps them in its log store as it keeps a local
replica's (:mod:`plughost.backends.ray.relay`).

Everything runs on an event loop of its own in a daemon thread, so Serve's loop and the
worker's traffic never wait on each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from plughost.backends.base import BASE_ENV
from plughost.backends.local.replica import ReplicaProcess, ReplicaSpec
from plughost.backends.ray.node import (
    WorkerConfig,
    create_sandbox,
    drop_hidden_import_paths,
    ray_thread_env,
)
from plughost.backends.ray.relay import (
    OutputFeed,
    Relay,
    install_capture,
)
from plughost.domain.serve_config import serving_option
from plughost.sandbox.host import Sandbox

log = logging.getLogger("plughost.ray.worker")
T = TypeVar("T")


class WorkerHost:
    """Owns one sandboxed worker and its TCP relay, on a loop thread of its own."""

    def __init__(
        self,
        plugin_dir: Path,
        init_kwargs: dict[str, Any],
        config: WorkerConfig,
        requirements: tuple[str, ...],
        env_path: Path | None,
        exit_with_worker: bool = True,
    ) -> None:
        self.secret = secrets.token_bytes(32)
        self.output = OutputFeed()
        self._exit_with_worker = exit_with_worker
        self._dir = Path(tempfile.mkdtemp(prefix="phr-"))
        os.chmod(self._dir, 0o700)
        self.socket_path = self._dir / f"r{config.release_id}-ray.sock"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="plughost-worker-host", daemon=True
        )
        self._thread.start()
        self.sandbox: Sandbox | None = None
        self.replica: ReplicaProcess | None = None
        self._server: asyncio.AbstractServer | None = None
        self.tcp_port = 0
        self.address = ""
        self._launch = None
        self._closing = False
        self.on_worker_exit: Any = None
        self.timings: dict[str, float] = {}  # seconds of each start step (reported)
        try:
            self._run(self._start(plugin_dir, init_kwargs, config, requirements, env_path))
        except BaseException:
            self.close()
            raise

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    async def _start(
        self,
        plugin_dir: Path,
        init_kwargs: dict[str, Any],
        config: WorkerConfig,
        requirements: tuple[str, ...],
        env_path: Path | None,
    ) -> None:
        began = time.monotonic()
        sandbox_config = config.sandbox_config()
        drop_hidden_import_paths(sys.path, sandbox_config.hidden)
        self.sandbox = await asyncio.to_thread(create_sandbox, sandbox_config)
        self.timings["probe"] = round(time.monotonic() - began, 3)
        launch = None
        if self.sandbox.enabled:
            launch = self.sandbox.replica_launch(
                plugin_dir, config.namespace_id, config.serve_config, env_dir=env_path
            )
        self._launch = launch
        spec = ReplicaSpec(
            plugin_dir=plugin_dir,
            socket_path=self.socket_path,
            init_kwargs=init_kwargs,
            env={
                **BASE_ENV, "HOME": str(plugin_dir), **ray_thread_env(), **config.env,
                # the namespace's models at their real paths (bubblewrap names its mounts)
                **self.sandbox.models.env(config.namespace_id, wrapped=False),
            },
            start_timeout_s=config.start_timeout_s,
            call_timeout_s=config.call_timeout_s,
            drain_timeout_s=config.drain_timeout_s,
            sandbox=launch,
            requirements=() if env_path else requirements,
            env_path=env_path,
            kill_on_call_timeout=True,
            serving=serving_option(config.serve_config),
        )
        launched = time.monotonic()
        from plughost.logs.capture import REPLICA_OUTPUT

        install_capture()
        # the worker's output task is created in this context: its lines go to the feed
        token = REPLICA_OUTPUT.set(self.output.add)
        try:
            self.replica = await ReplicaProcess.start(spec)
        finally:
            REPLICA_OUTPUT.reset(token)
        self.timings["worker"] = round(time.monotonic() - launched, 3)
        self.replica.on_exit(self._worker_exited)
        self.address = _node_address()
        self._server = await asyncio.get_running_loop().create_server(
            lambda: Relay(self), host=self.address, port=0, reuse_address=True
        )
        self.tcp_port = int(self._server.sockets[0].getsockname()[1])

    def _worker_exited(self, replica: ReplicaProcess) -> None:
        """A worker that dies (crash, killed after a timeout) takes its replica with it: Serve
        sees the actor die and starts a replacement, which registers a new worker."""
        if self._closing:
            return
        log.warning("the worker exited (code %s); ending this replica", replica.returncode)
        if self.on_worker_exit is not None:
            with contextlib.suppress(Exception):
                self.on_worker_exit()
        if self._exit_with_worker:
            self._loop.call_later(0.2, os._exit, 1)

    # -- what the replica actor asks ----------------------------------------------------------
    @property
    def missing_layers(self) -> list[str]:
        return self.sandbox.missing if self.sandbox is not None else []

    def alive(self) -> bool:
        return self.replica is not None and self.replica.alive

    def health(self, timeout_s: float = 5.0) -> bool:
        if self.replica is None or not self.replica.alive:
            return False
        return bool(self._run(self.replica.health(timeout_s), timeout_s + 1))

    async def call_raw(self, body: bytes, deadline_s: float | None = None) -> bytes | list[bytes]:
        """A call through the actor (the handle fallback), run on the host's loop; a
        streamed answer comes back whole, as the list of its items (Ray's handle returns
        one value)."""
        assert self.replica is not None
        future = asyncio.run_coroutine_threadsafe(
            _whole(self.replica.call_raw(body, checked=True, deadline_s=deadline_s)), self._loop
        )
        return await asyncio.wrap_future(future)

    def kill_worker(self) -> None:
        if self.replica is not None:
            self._loop.call_soon_threadsafe(self.replica.kill)

    def close(self) -> None:
        """Stop the relay and the worker (bounded), end the loop, remove the socket folder."""
        self._closing = True

        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            if self.replica is not None:
                await self.replica.stop(0.5)

        with contextlib.suppress(Exception):
            if self._loop.is_running():
                self._run(stop(), 10)
        if self.sandbox is not None:
            self.sandbox.release(self._launch)
        self._loop.call_soon_threadsafe(self._loop.stop)
        shutil.rmtree(self._dir, ignore_errors=True)


async def _whole(call: Any) -> bytes | list[bytes]:
    """A call's result bytes, or every item of its stream."""
    from plughost.backends.stream import CallStream

    result = await call
    if isinstance(result, CallStream):
        return [item async for item in result]
    return bytes(result)


def _node_address() -> str:
    """This node's address as Ray knows it (what other nodes reach it at)."""
    try:
        import ray

        return str(ray.util.get_node_ip_address())
    except Exception:  # noqa: BLE001 - outside Ray (tests): the loopback
        return "127.0.0.1"


def local_node_id() -> str:
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id())
    except Exception:  # noqa: BLE001
        return ""


def host_name() -> str:
    return socket.gethostname()


class Registration:
    """This replica's entry in the server's replica directory."""

    def __init__(self, directory: Any, app: str, replica_id: str) -> None:
        self._directory = directory
        self.app = app
        self.replica_id = replica_id

    def unregister(self) -> None:
        if self._directory is not None:
            with contextlib.suppress(Exception):
                self._directory.unregister.remote(self.app, self.replica_id)
            self._directory = None


def worker_info(host: WorkerHost) -> dict[str, Any]:
    """What the server needs to reach (and judge) this replica's worker."""
    sandbox = host.sandbox
    return {
        "node_id": local_node_id(),
        "hostname": host_name(),
        "host": host.address,
        "port": host.tcp_port,
        "unix": str(host.socket_path),
        "secret": host.secret.hex(),
        "pid": host.replica.pid if host.replica is not None else 0,
        "sandbox_mode": sandbox.mode if sandbox is not None else "off",
        "layers": sandbox.status()["layers"] if sandbox is not None else {},
        "missing_layers": host.missing_layers,
        "memory_limit": sandbox.memory_layer if sandbox is not None else "none",
        "start_s": host.timings,
    }


def register_worker(host: WorkerHost, app: str, directory: tuple[str, str] | None) -> Registration:
    """Announce the worker to the server (no wait: the call is queued to the directory)."""
    replica_id = secrets.token_hex(6)
    handle = None
    if directory is not None:
        import ray

        try:
            handle = ray.get_actor(directory[0], namespace=directory[1])
            handle.register.remote(app, replica_id, worker_info(host))
        except Exception:
            log.warning("cannot register with the replica directory", exc_info=True)
            handle = None
    registration = Registration(handle, app, replica_id)
    host.on_worker_exit = registration.unregister
    return registration
