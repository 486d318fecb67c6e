"""Container calls: what plugin code asks the server for through ``container`` (secrets, LLM
calls), as plain data every transport carries unchanged.

A request is ``{"target": <one of TARGETS>, "args": {...}}``; a reply is ``{"ok": true,
"result": <json>}`` or ``{"ok": false, "error": {"type": str, "message": str}}``. The plugin
never names its organization: the server takes it from the connection the request arrived
on (a release's replica, a batch job's worker), so a plugin reaches only its own.

Transports (each with ids of its own): the replica socket (:mod:`plughost.replica.protocol`,
``cid`` frames), a batch worker's pipes (:mod:`plughost.batch.protocol`, ``container``
frames) and, for batch workers on Ray, the job's mailbox actor.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

SECRETS_GET = "secrets.get"
SECRETS_LIST = "secrets.list"
LLM_GENERATE = "llm.generate"
# a model load's report (model, outcome, seconds): the plugin does not wait for its reply
MODEL_LOADS = "models.load_report"
# another plugin deployed in the caller's namespace: is there one of that name, call it
PLUGIN_HAS = "plugins.has"
PLUGIN_CALL = "plugins.call"
TARGETS = frozenset(
    {SECRETS_GET, SECRETS_LIST, LLM_GENERATE, MODEL_LOADS, PLUGIN_HAS, PLUGIN_CALL}
)
PLUGIN_NOT_DEPLOYED = "PluginNotDeployed"
PLUGIN_FAILED = "PluginError"

# error types a reply may carry besides the server's own exceptions
BAD_REQUEST = "ContainerRequestError"
UNAVAILABLE = "ContainerUnavailable"
TIMED_OUT = "ContainerTimeout"
MAX_REQUEST_BYTES = 32 << 20  # a request with inline images stays well below this


@dataclass(frozen=True, slots=True)
class ContainerScope:
    """Whose plugin asks: the namespace it runs in and, when the caller knows it already (a
    batch job's row), the organization; else the server looks it up from the namespace."""

    namespace_id: str | None
    organization_id: str | None = None


class ContainerCalls(Protocol):
    """The server side of container calls (:class:`plughost.services.container.ContainerService`).

    ``call`` never raises for a bad or failing request: it answers an error reply, so a
    transport only ever writes what it gets back."""

    def call(self, scope: ContainerScope, request: Any) -> Awaitable[dict[str, Any]]: ...


def ok_reply(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def error_reply(type_name: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"type": type_name, "message": message}}


def check_request(request: Any) -> tuple[str, dict[str, Any]]:
    """The target and arguments of a request; TypeError (not an object) or ValueError (an
    unknown target) naming what is wrong."""
    if not isinstance(request, dict):
        raise TypeError("a container request must be a JSON object")
    target = request.get("target")
    if target not in TARGETS:
        raise ValueError(
            f"unknown container target {target!r} (known: {', '.join(sorted(TARGETS))})"
        )
    args = request.get("args") or {}
    if not isinstance(args, dict):
        raise TypeError("a container request's args must be a JSON object")
    return str(target), args


def reply_parts(reply: Any) -> tuple[bool, Any, str, str]:
    """``(ok, result, error type, error message)`` of a reply; a malformed one is an error."""
    if not isinstance(reply, dict):
        return False, None, UNAVAILABLE, "the server sent a malformed container reply"
    if reply.get("ok") is True:
        return True, reply.get("result"), "", ""
    error = reply.get("error") if isinstance(reply.get("error"), dict) else {}
    return False, None, str(error.get("type") or UNAVAILABLE), str(error.get("message") or "")
