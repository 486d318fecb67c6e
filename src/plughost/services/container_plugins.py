"""Container calls from one plugin to another deployed in the same namespace (what
``shared.inference.registry.get_batch_service`` returns for a deployed plugin uses them).

A plugin names the other by name, plugin id or deployment name, as the inference routes do;
only its own namespace is looked up (the caller's scope, never the request). The call takes
the route's replicas directly, as ``/inference/{namespace}/{name}`` would.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from plughost.domain.container import (
    BAD_REQUEST,
    PLUGIN_FAILED,
    PLUGIN_NOT_DEPLOYED,
    UNAVAILABLE,
    error_reply,
    ok_reply,
)
from plughost.errors import CallFailed, Unavailable

MAX_NAME_CHARS = 200


class PluginRoutes(Protocol):
    """The route table (:class:`plughost.dataplane.routes.RouteTable`) as seen here."""

    def lookup(self, namespace_id: str, route_name: str) -> Any: ...


def _name(args: dict[str, Any]) -> str | None:
    name = args.get("name")
    return name if isinstance(name, str) and 0 < len(name) <= MAX_NAME_CHARS else None


def has_plugin(routes: PluginRoutes, namespace: str, args: dict[str, Any]) -> dict[str, Any]:
    """Whether a deployed plugin of that name serves in ``namespace``."""
    name = _name(args)
    if name is None:
        return error_reply(BAD_REQUEST, "a plugin name is a non-empty string")
    return ok_reply(routes.lookup(namespace, name) is not None)


async def call_plugin(
    routes: PluginRoutes, namespace: str, args: dict[str, Any]
) -> dict[str, Any]:
    """One call of the named plugin with ``inputs`` and ``parameters``; its JSON result."""
    name = _name(args)
    inputs, parameters = args.get("inputs") or {}, args.get("parameters") or {}
    if name is None or not isinstance(inputs, dict) or not isinstance(parameters, dict):
        return error_reply(BAD_REQUEST, "a plugin call takes a name, inputs and parameters")
    route = routes.lookup(namespace, name)
    if route is None:
        return error_reply(PLUGIN_NOT_DEPLOYED, f"no plugin {name!r} is deployed in {namespace}")
    try:
        body = orjson.dumps({"inputs": inputs, "parameters": parameters})
    except TypeError as exc:
        return error_reply(BAD_REQUEST, f"inputs and parameters must be plain JSON: {exc}")
    try:
        raw = await route.pick().group.call_body(body)
    except CallFailed as exc:
        return error_reply(PLUGIN_FAILED, f"{name}: {exc.type_name}: {exc.message}")
    except Unavailable as exc:
        return error_reply(UNAVAILABLE, f"{name} is unavailable: {exc}")
    return ok_reply(orjson.loads(raw))
