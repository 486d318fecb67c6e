"""The Serve deployment class: one Ray Serve replica of a plugin.

It runs inside a Ray worker whose working directory is the plugin folder (the runtime_env
``working_dir`` Ray unpacked from the uploaded package) and whose ``sys.path`` holds the
plughost package (the runtime_env ``py_modules``). It loads the plugin with the same rules
as a local replica (:func:`plughost.worker.loader.load_plugin`: factory or class, the
``shared.plugins.inference.serve`` shim, top-level and relative imports), runs calls with the
same :class:`~plughost.worker.invoke.ServiceInvoker` and encodes results with the same
:func:`~plughost.worker.protocol.encode_result`, so a plugin behaves alike on both backends.

Nothing here imports ray: Serve wraps the class, the backend talks to it through handles.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plughost.sandbox.requirements import missing_requirements
from plughost.sandbox.runner import set_rlimits
from plughost.worker.invoke import ServiceInvoker
from plughost.worker.loader import PluginLoadError, load_plugin
from plughost.worker.protocol import FrameError, ResultEncodingError, decode_object, encode_result

logger = logging.getLogger("plughost.ray.replica")

VALIDATION_ERROR = "ValidationError"
MAX_ERROR_CHARS = 8000

# A reply is (True, result JSON bytes) or (False, exception type name, message).
Reply = tuple[bool, bytes] | tuple[bool, str, str]


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


def harden_worker_process() -> None:
    """Scrub the environment to an allowlist and set the rlimits Ray tolerates.

    Runs only in a replica started by the Ray backend (it sets HARDEN_FLAG in the
    runtime_env), never in a process that merely imports this module."""
    if os.environ.pop(HARDEN_FLAG, None) != "1":
        return
    for name in list(os.environ):
        if name not in ENV_KEEP and not name.startswith(ENV_KEEP_PREFIXES):
            del os.environ[name]
    set_rlimits(RAY_RLIMITS)


class PluginReplica:
    """A Serve deployment class: loads the plugin in the constructor, answers raw calls.

    Constructor failures raise PluginStartError (Serve marks the deployment failed and keeps
    the message); a plugin exception during a call is a reply, never a replica crash.
    """

    def __init__(
        self, init_kwargs: dict[str, Any] | None = None, requirements: Sequence[str] = ()
    ) -> None:
        harden_worker_process()
        plugin_dir = Path.cwd()
        # the plugin folder is the replica's home, as on the local backend
        os.environ["HOME"] = str(plugin_dir)
        sys.dont_write_bytecode = True
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

    async def __call__(self, body: bytes) -> Reply:
        """Run the plugin on a raw ``{"inputs", "parameters"}`` body."""
        try:
            inputs, parameters = call_arguments(body)
        except TypeError as exc:
            return (False, VALIDATION_ERROR, str(exc))
        try:
            result = await self._invoker.call(inputs, parameters)
        except (Exception, SystemExit) as exc:  # a plugin failure is a reply, not a crash
            logger.warning("plugin raised %s", type(exc).__name__, exc_info=True)
            return (False, type(exc).__name__, str(exc))
        try:
            return (True, encode_result(result))
        except ResultEncodingError as exc:
            return (False, type(exc).__name__, str(exc))

    async def health(self) -> bool:
        """The service's own verdict; a raising health method means unhealthy."""
        try:
            return await self._invoker.health()
        except Exception:
            logger.warning("plugin health check raised", exc_info=True)
            return False

    async def check_health(self) -> None:
        """Serve's periodic replica check: an unhealthy plugin gets its replica replaced."""
        if not await self.health():
            raise RuntimeError("the plugin's health() reported unhealthy")

    def __del__(self) -> None:
        invoker = getattr(self, "_invoker", None)
        if invoker is not None:
            invoker.shutdown()
