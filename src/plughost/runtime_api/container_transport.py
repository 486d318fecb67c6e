"""How this process sends the plugin's container calls: set once by the host process.

Kept outside ``shared``: plugins import the runtime API as ``shared.*`` while plughost
reaches the same files as ``plughost.runtime_api.shared.*`` (two module objects), and the
transport must be one. The replica sets it to its
:class:`~plughost.replica.container_link.ContainerLink`, the batch worker to its pipe
client; ``transport(request)`` returns a :class:`concurrent.futures.Future` of the reply
(:mod:`plughost.domain.container`) and may be called from any thread.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

Transport = Callable[[dict[str, Any]], "Future[Any]"]
_transport: Transport | None = None


def install(transport: Transport | None) -> None:
    """Set (or with None, clear) this process's transport."""
    global _transport
    _transport = transport


def current() -> Transport | None:
    return _transport


def plugin_container() -> Any:
    """The ``container`` object as plugins import it (``shared.plugins.container``); the
    runtime API folder must be on ``sys.path`` (the loaders put it there)."""
    import importlib

    return importlib.import_module("shared.plugins.container").container
