"""The Serve deployment class: one Ray Serve replica of a plugin.

What the backend deploys always passes ``worker``: the replica then runs no plugin code. It
fetches the release's package the server uploaded to the cluster, starts the plugin in the
local backend's sandboxed worker on its node (:mod:`plughost.backends.ray.worker`), registers
it in the server's replica directory, answers Serve's health checks from it, passes handle
calls (the fallback while the server has no direct channel) on to it, and streams its output
to the server (:mod:`plughost.backends.ray.relay`). Its own process is hardened too (a
scrubbed environment, no core dumps).

Without ``worker`` (tests, old callers) it loads the plugin in this process with the same
rules as a local replica (:func:`plughost.replica.loader.load_plugin`), runs calls with the
same :class:`~plughost.replica.invoke.ServiceInvoker` and encodes results with the same
:func:`~plughost.replica.protocol.encode_result`.

Nothing here imports ray: Serve wraps the class, the backend talks to it through handles.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from plughost.replica.invoke import ServiceInvoker
from plughost.replica.loader import PluginLoadError, load_plugin
from plughost.replica.protocol import FrameError, ResultEncodingError, decode_object, encode_result
from plughost.sandbox.requirements import missing_requirements
from plughost.sandbox.runner import set_rlimits

logger = logging.getLogger("plughost.ray.replica")

VALIDATION_ERROR = "ValidationError"
MAX_ERROR_CHARS = 8000

# A reply is (True, result JSON bytes) or (False, exception type name, message).
# (True, result JSON) | (False, error type, message) | ("stream", [item JSON, ...])
Reply = tuple[bool, bytes] | tuple[bool, str, str] | tuple[str, list[bytes]]


class PluginStartError(RuntimeError):
    """The plugin failed to load; the message is ``"<Type>: <message>"`` of its own error.

    The backend finds this class name in Serve's status text to show the plugin's message
    without Serve's traceback around it.
    """


def describe_error(exc: BaseException) -> str:
    """``"<Type>: <message>"``, naming the missing module of an ImportError (as a local
    replica reports it)."""
    text = f"{type(exc).__name__}: {exc}"
    missing = getattr(exc, "name", None)
    if isinstance(exc, ImportError) and missing and missing not in text:
        text += f" (module {missing!r})"
    return text[:MAX_ERROR_CHARS]


def call_arguments(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """``inputs`` and ``parameters`` of a raw request body; TypeError when malformed."""
    try:
        request = decode_object(body)
    except FrameError as exc:
        raise TypeError(f"request body: {exc}") from exc
    inputs = request.get("inputs") or {}
    parameters = request.get("parameters") or {}
    if not isinstance(inputs, dict):
        raise TypeError("inputs must be a JSON object")
    if not isinstance(parameters, dict):
        raise TypeError("parameters must be a JSON object")
    return inputs, parameters


HARDEN_FLAG = "PLUGHOST_RAY_REPLICA_HARDEN"
# What a plugin may see of the Ray worker's environment: the worker inherits the raylet's,
# which for a Ray owned by the server is the server's own (database URL, bootstrap key).
ENV_KEEP = frozenset({
    "PATH", "LANG", "HOME", "TMPDIR", "TZ", "PYTHONPATH", "PYTHONHASHSEED",
    "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
    "MALLOC_ARENA_MAX", "CUDA_VISIBLE_DEVICES",
})
ENV_KEEP_PREFIXES = ("RAY_", "LC_", "OMP_", "MKL_")
# Limits a Ray worker tolerates: no core dumps, bounded file writes. RLIMIT_AS and
# RLIMIT_NOFILE are left to the operator's container limits (SECURITY.md): Ray's own worker
# maps the object store and keeps many gRPC descriptors in the same process.
RAY_RLIMITS = {"CORE": 0, "FSIZE": 1 << 30}


def harden_worker_process(force: bool = False) -> None:
    """Scrub the environment to an allowlist and set the rlimits Ray tolerates.

    Runs only in a replica started by the Ray backend (``force``, or HARDEN_FLAG in the
    runtime_env), never in a process that merely imports this module."""
    if os.environ.pop(HARDEN_FLAG, None) != "1" and not force:
        return
    for name in list(os.environ):
        if name not in ENV_KEEP and not name.startswith(ENV_KEEP_PREFIXES):
            del os.environ[name]
    set_rlimits(RAY_RLIMITS)


class PluginReplica:
    """A Serve deployment class: loads the plugin in the constructor, answers raw calls.

    With ``worker`` (what the backend always passes: :class:`~plughost.backends.ray.node.
    WorkerConfig` fields) the plugin runs in a sandboxed worker process on this node, which
    the server calls directly; this actor owns that worker, registers its address in the
    server's replica directory (``directory``: name and namespace) under ``app``, answers
    Serve's health checks from the worker and passes handle calls on to it. Without
    ``worker`` the plugin is loaded in this process (kept for tests and old callers).

    Start failures raise PluginStartError (Serve marks the deployment failed and keeps the
    message): from the constructor in process, from Serve's first health check with a worker
    (its start runs in a thread meanwhile, see :meth:`_start_worker`); a plugin exception
    during a call is a reply, never a replica crash.
    """

    # what __del__ cleans up, unset until the constructor gets that far
    _host: Any = None
    _registration: Any = None
    _start: Future[None] | None = None  # the worker's start (worker mode only)
    _invoker: ServiceInvoker | None = None

    def __init__(
        self,
        init_kwargs: dict[str, Any] | None = None,
        requirements: Sequence[str] = (),
        worker: dict[str, Any] | None = None,
        app: str = "",
        directory: tuple[str, str] | None = None,
    ) -> None:
        harden_worker_process(force=worker is not None)
        plugin_dir = Path.cwd()
        # the plugin folder is the replica's home, as on the local backend
        os.environ["HOME"] = str(plugin_dir)
        sys.dont_write_bytecode = True
        self._host: Any = None
        self._invoker: ServiceInvoker | None = None
        if worker is not None:
            self._start_worker(plugin_dir, init_kwargs or {}, requirements, worker, app, directory)
            return
        try:
            missing = missing_requirements(list(requirements), plugin_dir)
            if missing:
                raise PluginLoadError(
                    "missing dependencies (not installed where replicas run): " + ", ".join(missing)
                )
            plugin = load_plugin(plugin_dir, init_kwargs or {})
        except (Exception, SystemExit) as exc:  # the plugin's own failure, reported verbatim
            logger.exception("plugin failed to load")
            raise PluginStartError(describe_error(exc)) from None
        self._invoker = ServiceInvoker.for_plugin(plugin)

    def _start_worker(
        self,
        plugin_dir: Path,
        init_kwargs: dict[str, Any],
        requirements: Sequence[str],
        worker: dict[str, Any],
        app: str,
        directory: tuple[str, str] | None,
    ) -> None:
        """Start the worker in a thread and return: Serve's own steps after the constructor
        (its GC pass, the replica's metadata) run meanwhile, and Serve's first health check,
        which it makes before it counts the replica as started, waits for the worker
        (:meth:`_ready`); a failed start fails that check, which Serve takes for a failed
        constructor (the same message, the same retry count)."""
        started: Future[None] = Future()
        self._start = started

        def run() -> None:
            try:
                self._launch(plugin_dir, init_kwargs, requirements, worker, app, directory)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
                started.set_exception(exc)
            else:
                started.set_result(None)

        threading.Thread(target=run, name="plughost-replica-start", daemon=True).start()

    def _launch(
        self,
        plugin_dir: Path,
        init_kwargs: dict[str, Any],
        requirements: Sequence[str],
        worker: dict[str, Any],
        app: str,
        directory: tuple[str, str] | None,
    ) -> None:
        from plughost.backends.ray.node import WorkerConfig, fetch_package
        from plughost.backends.ray.worker import WorkerHost, register_worker

        config = WorkerConfig(**worker)
        began = time.monotonic()
        began_at = time.time()  # the server reads the start against its deploy call
        try:
            if config.plugin_package:
                plugin_dir = fetch_package(config.plugin_package)
                os.environ["HOME"] = str(plugin_dir)
            env_path = fetch_package(config.env_package) if config.env_package else None
            fetched = time.monotonic() - began
            host = WorkerHost(plugin_dir, init_kwargs, config, tuple(requirements), env_path)
            host.timings["fetch"] = round(fetched, 3)
            host.timings["began_at"] = round(began_at, 3)
        except Exception as exc:  # noqa: BLE001 - the plugin's (or the sandbox's) failure
            tail = getattr(exc, "output_tail", None)
            if tail is not None:
                logger.warning("the worker failed to start: %s\n%s", exc, "\n".join(tail))
            message = str(exc) if tail is not None else describe_error(exc)
            raise PluginStartError(message) from None
        self._host = host
        self._registration = register_worker(host, app, directory)

    async def _ready(self) -> None:
        """Until the worker has started; PluginStartError when it could not."""
        if self._start is not None:
            await asyncio.wrap_future(self._start)

    async def __call__(self, body: bytes, deadline_s: float | None = None) -> Reply:
        """Run the plugin on a raw ``{"inputs", "parameters"}`` body; a streamed answer is
        ``("stream", [item JSON, ...])``, whole."""
        if self._start is not None:
            await self._ready()
            return await self._through_worker(body, deadline_s)
        try:
            inputs, parameters = call_arguments(body)
        except TypeError as exc:
            return (False, VALIDATION_ERROR, str(exc))
        assert self._invoker is not None
        try:
            result = await self._invoker.call(inputs, parameters)
        except (Exception, SystemExit) as exc:  # a plugin failure is a reply, not a crash
            logger.warning("plugin raised %s", type(exc).__name__, exc_info=True)
            return (False, type(exc).__name__, str(exc))
        try:
            if inspect.isgenerator(result):
                return ("stream", [encode_result(item) for item in result])
            if inspect.isasyncgen(result):
                return ("stream", [encode_result(item) async for item in result])
            return (True, encode_result(result))
        except ResultEncodingError as exc:
            return (False, type(exc).__name__, str(exc))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - raised mid-stream, a reply
            return (False, type(exc).__name__, str(exc))

    async def _through_worker(self, body: bytes, deadline_s: float | None = None) -> Reply:
        from plughost.errors import CallFailed, DeadlineExceeded

        try:
            call_arguments(body)
        except TypeError as exc:
            return (False, VALIDATION_ERROR, str(exc))
        try:
            result = await self._host.call_raw(body, deadline_s)
        except CallFailed as exc:
            return (False, exc.type_name, exc.message)
        except DeadlineExceeded as exc:
            return (False, DeadlineExceeded.error_type, exc.message)
        if isinstance(result, list):
            return ("stream", result)
        return (True, result)

    async def health(self) -> bool:
        """The service's own verdict; a raising health method means unhealthy."""
        if self._start is not None:
            await self._ready()
            return bool(await asyncio.to_thread(self._host.health))
        assert self._invoker is not None
        try:
            return await self._invoker.health()
        except Exception:
            logger.warning("plugin health check raised", exc_info=True)
            return False

    async def check_health(self) -> None:
        """Serve's periodic replica check: an unhealthy plugin (or a worker that is gone)
        gets its replica replaced."""
        await self._ready()  # Serve's first check: the worker's start, or its failure
        if self._host is not None and not self._host.alive():
            # the worker is gone (its exit also ends this process shortly): end the replica
            # now, so Serve records a dead replica rather than a failed health check, and a
            # replacement's own error stays the deployment's message
            os._exit(1)
        if not await self.health():
            raise RuntimeError("the plugin's health() reported unhealthy")

    def __del__(self) -> None:
        if self._start is not None and not self._start.done():
            # still starting: end the worker once it is up
            self._start.add_done_callback(lambda _f: self._release())
            return
        self._release()

    def _release(self) -> None:
        if self._host is not None:
            if self._registration is not None:
                self._registration.unregister()
            self._host.close()
        if self._invoker is not None:
            self._invoker.shutdown()
