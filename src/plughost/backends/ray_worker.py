"""Inside a Serve replica: the plugin's sandboxed worker process and the way in to it.

A Serve replica of the Ray backend does not run plugin code itself. It starts the same
worker process a local replica is (``python -I -m plughost.worker`` under bubblewrap,
seccomp, rlimits, its own uid, a scrubbed environment: :mod:`plughost.sandbox`), on its own
node, through the same launch (:class:`~plughost.backends.replica.ReplicaProcess`), and
offers the server two ways to it:

- the worker's Unix socket (0600, in a 0700 folder), for a server on the same node;
- a TCP port on the node's address, a relay to that socket that first asks for proof of the
  replica's secret (:func:`answer`): the relay sends a random nonce, the client must answer
  ``HMAC-SHA256(secret, nonce)``. The secret is made here and reaches the server only
  through Ray (the replica directory), so nothing unauthenticated listens on the network.

The same port, with the mode byte ``L``, streams the worker's output lines (``[pid, line]``
JSON, one per line) to the server, which keeps them in its log store as it keeps a local
replica's (:mod:`plughost.backends.ray_relay`).

Everything runs on an event loop of its own in a daemon thread, so Serve's loop and the
worker's traffic never wait on each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from plughost.backends.base import BASE_ENV
from plughost.backends.ray_relay import (  # noqa: F401 - the relay's names, as before the split
    MAGIC,
    MODE_KILL,
    MODE_LOGS,
    MODE_RELAY,
    NONCE_BYTES,
    OutputFeed,
    _Relay,
    answer,
    install_capture,
)
from plughost.backends.replica import ReplicaProcess, ReplicaSpec
from plughost.sandbox.host import Sandbox
from plughost.sandbox.policy import SandboxConfig
from plughost.sandbox.probe import ProbeResult, probe_layers
from plughost.sandbox.uids import UidPool

log = logging.getLogger("plughost.ray.worker")
T = TypeVar("T")


@dataclass(frozen=True)
class WorkerConfig:
    """What a replica needs to start its worker (built by the server, sent as init args)."""

    sandbox: dict[str, Any] = field(default_factory=dict)  # SandboxConfig fields
    namespace_id: str | None = None
    serve_config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    plugin_package: str = ""  # gcs:// URI of the plugin folder's package (the server uploaded it)
    env_package: str = ""  # gcs:// URI of the plugin environment's package, if any
    start_timeout_s: float = 60.0
    call_timeout_s: float = 60.0
    drain_timeout_s: float = 2.0
    release_id: int = 0

    def sandbox_config(self) -> SandboxConfig:
        raw = dict(self.sandbox)
        raw["egress_namespaces"] = frozenset(raw.get("egress_namespaces") or ())
        raw["hidden"] = tuple(Path(p) for p in raw.get("hidden") or ())
        return SandboxConfig(**raw)


def sandbox_fields(config: SandboxConfig) -> dict[str, Any]:
    """A SandboxConfig as plain data for Ray's init args."""
    return {
        "mode": config.mode,
        "bwrap": config.bwrap,
        "egress_namespaces": sorted(config.egress_namespaces),
        "memory_gb": config.memory_gb,
        "max_open_files": config.max_open_files,
        "max_processes": config.max_processes,
        "max_file_bytes": config.max_file_bytes,
        "tmp_bytes": config.tmp_bytes,
        "uid_base": config.uid_base,
        "uid_count": config.uid_count,
        "hidden": [str(p) for p in config.hidden],
        "probe_timeout_s": config.probe_timeout_s,
    }


PROBE_TTL_S = 300.0
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def ray_thread_env() -> dict[str, str]:
    """The thread counts Ray set for this replica from its ``num_cpus`` (OMP_NUM_THREADS), so
    the worker's numeric libraries use the CPUs the replica reserved, not every core."""
    return {name: os.environ[name] for name in THREAD_VARS if os.environ.get(name)}


def create_sandbox(config: SandboxConfig, cache: Path | None = None) -> Sandbox:
    """:meth:`Sandbox.create`, with the node's probe result kept for PROBE_TTL_S.

    The probe runs the self-test inside the full wrapping (up to three interpreter starts);
    every replica did it again, a large part of a deploy on a busy node. The result is kept
    per configuration in a folder only the Ray user can write. A cached "held" that no
    longer holds (bubblewrap removed meanwhile) makes the worker's launch fail loudly; it
    never runs the plugin with fewer layers than reported."""
    if config.mode == "off":
        return Sandbox.create(config)
    cache = cache or package_cache()
    key = hashlib.sha256(
        repr((sorted(sandbox_fields(config).items()), sys.executable, os.geteuid())).encode()
    ).hexdigest()[:16]
    path = cache / f"probe-{key}.json"
    result = None
    with contextlib.suppress(OSError, ValueError, TypeError, RuntimeError):
        if _own_folder(cache) and time.time() - path.stat().st_mtime < PROBE_TTL_S:
            raw = json.loads(path.read_text())
            result = ProbeResult(
                raw["layers"], raw["bwrap_path"], raw["share_net_only"], raw["details"]
            )
    if result is None:
        result = probe_layers(config)
        with contextlib.suppress(OSError, TypeError, RuntimeError):
            tmp = _own_folder(cache) / f".probe-{key}-{os.getpid()}"
            tmp.write_text(json.dumps(result.__dict__))
            tmp.rename(path)
    sandbox = Sandbox(
        config,
        result.layers,
        bwrap_path=result.bwrap_path,
        share_net_only=result.share_net_only,
        uids=UidPool(config.uid_base, config.uid_count) if result.layers.get("uid") else None,
        details=result.details,
    )
    sandbox._report()  # logs missing layers; SandboxUnavailable in strict mode
    return sandbox


def drop_hidden_import_paths(path: list[str], hidden: tuple[Path, ...]) -> None:
    """Remove import-path entries that are, or hold, a hidden folder.

    A Ray worker's ``sys.path`` carries the driver's working directory (for a server started
    in ``$PLUGHOST_HOME``, the home itself); the sandbox binds every import-path folder into
    the worker's view, so such an entry would bind what it must hide."""
    for entry in list(path):
        if not entry or not os.path.isabs(entry):
            continue
        folder = Path(entry)
        if any(h == folder or h.is_relative_to(folder) or folder.is_relative_to(h) for h in hidden):
            path.remove(entry)


def package_cache() -> Path:
    return Path(tempfile.gettempdir()) / f"plughost-ray-packages-{os.getuid()}"


def _own_folder(folder: Path) -> Path:
    """Create ``folder`` (0755) and make sure only this uid can write to it: a folder under
    /tmp made by another user could otherwise feed replicas its own packages or probe."""
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    info = folder.lstat()
    if info.st_uid != os.getuid() or info.st_mode & 0o022 or not folder.is_dir():
        raise RuntimeError(f"{folder} is not a private folder of this user")
    return folder


def fetch_package(uri: str, cache: Path | None = None) -> Path:
    """A package the server uploaded to the cluster (``gcs://_ray_pkg_<hash>.zip``, the same
    upload a runtime_env would use), unpacked once per node into a cache folder.

    Fetched here rather than named in the replica's runtime_env: an actor without a
    runtime_env of its own starts in one of Ray's prestarted worker processes, while a
    runtime_env per release made Ray start (and set up) a new worker process for every
    replica, the larger part of a deploy."""
    from ray.experimental.internal_kv import _internal_kv_get

    cache = cache or package_cache()
    target = cache / uri.removeprefix("gcs://").removesuffix(".zip")
    if target.is_dir() and _own_folder(cache):
        return target
    _own_folder(cache)
    data = _internal_kv_get(uri)
    if data is None:
        raise RuntimeError(f"the package {uri} is no longer in the cluster")
    unpacked = Path(tempfile.mkdtemp(dir=cache, prefix=".unpack-"))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(unpacked)
    os.chmod(unpacked, 0o755)
    try:
        unpacked.rename(target)
    except OSError:  # another replica on this node unpacked it first
        shutil.rmtree(unpacked, ignore_errors=True)
    return target


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
            env={**BASE_ENV, "HOME": str(plugin_dir), **ray_thread_env(), **config.env},
            start_timeout_s=config.start_timeout_s,
            call_timeout_s=config.call_timeout_s,
            drain_timeout_s=config.drain_timeout_s,
            sandbox=launch,
            requirements=() if env_path else requirements,
            env_path=env_path,
            kill_on_call_timeout=True,
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
            lambda: _Relay(self), host=self.address, port=0, reuse_address=True
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

    async def call_raw(self, body: bytes) -> bytes:
        """A call through the actor (the handle fallback), run on the host's loop."""
        assert self.replica is not None
        future = asyncio.run_coroutine_threadsafe(
            self.replica.call_raw(body, checked=True), self._loop
        )
        return await asyncio.wrap_future(future)

    def kill_worker(self) -> None:
        if self.replica is not None:
            self._loop.call_soon_threadsafe(self.replica._kill_group)

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
