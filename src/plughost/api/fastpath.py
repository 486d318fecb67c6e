"""The two hot paths as a plain ASGI app wrapped around the FastAPI app.

- `POST /inference/{namespace_id}/{route}`: the body goes to a replica as is;
- `GET /v1/namespaces/{namespace_id}/plugins/{plugin_id}/status`: what clients poll while a
  deployment runs, answered from the in-memory release board.

The key and namespace checks hit an in-memory cache, and nothing here touches the database
on a cache hit (a miss goes to the thread pool once). Every other request, and the lifespan,
go on to FastAPI. Profiling showed FastAPI's middleware stack, routing, dependencies and
thread-pool hand-offs cost several times what the replica itself spends on a small plugin,
and that status polls were dominated by them and by database reads. The FastAPI routes for
both paths stay declared (OpenAPI) and answer the same bodies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plughost.api.errors import error_body
from plughost.errors import (
    BadRequestError,
    PayloadTooLargeError,
    PlughostError,
    ServiceUnavailableError,
)
from plughost.services.uploads import Scope as PluginScope

log = logging.getLogger("plughost.api")

PREFIX = "/inference/"
STATUS_PREFIX = "/v1/namespaces/"
MAX_BODY_BYTES = 64 * 1024 * 1024
_JSON_HEADERS = [(b"content-type", b"application/json")]


class FastPath:
    """Answers inference calls and status polls itself; everything else goes to ``app``.

    ``state``: the FastAPI app's state, where the lifespan puts the runtime."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state
        self.flights = _Flights()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = _route(scope) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        kind, namespace_id, name = handler
        try:
            if kind == "inference":
                out = await self._inference(scope, receive, namespace_id, name)
            else:
                out = await self._status(scope, namespace_id, name)
        except PlughostError as exc:
            await _send(send, exc.status_code,
                        orjson.dumps(error_body(exc.status_code, exc.message, exc.error_type, exc.details)))
            return
        except Exception as exc:  # the error body, never a dropped connection
            log.exception("%s request failed", kind)
            await _send(send, 500, orjson.dumps(error_body(
                500, f"internal error: {type(exc).__name__}", "InternalServerError")))
            return
        await _send(send, 200, out)

    async def _inference(self, scope: Scope, receive: Receive, namespace_id: str, route: str) -> bytes:
        rt, _ = await _authorized(self.state, scope, namespace_id, self.flights)
        body = await _read_body(receive)
        _check_payload(body)
        return bytes(await rt.deployments.infer_body(namespace_id, route, body))

    async def _status(self, scope: Scope, namespace_id: str, plugin_id: str) -> bytes:
        rt, principal = await _authorized(self.state, scope, namespace_id, self.flights)
        where = PluginScope(organization_id=principal.organization_id, namespace_id=namespace_id)
        body = rt.deployments.cached_status(where, plugin_id)
        if body is None:
            body = await run_in_threadpool(rt.deployments.status, where, plugin_id)
        return orjson.dumps(body)


def _route(scope: Scope) -> tuple[str, str, str] | None:
    """("inference" | "status", namespace_id, route or plugin id) for a hot path, else None."""
    path: str = scope.get("path", "")
    method = scope["method"]
    if method == "POST" and path.startswith(PREFIX):
        parts = path[len(PREFIX):].split("/")
        if len(parts) == 2 and parts[0] and parts[1]:
            return "inference", parts[0], parts[1]
    elif method == "GET" and path.startswith(STATUS_PREFIX) and path.endswith("/status"):
        parts = path[len(STATUS_PREFIX):].split("/")
        # {namespace_id}/plugins/{plugin_id}/status
        if len(parts) == 4 and parts[1] == "plugins" and parts[0] and parts[2]:
            return "status", parts[0], parts[2]
    return None


async def _authorized(
    app_state: Any, scope: Scope, namespace_id: str, flights: _Flights
) -> tuple[Any, Any]:
    """The runtime and the caller, once the caller's key may see the namespace (else 401/404).

    Cache misses read the database once however many requests are waiting on them; entries
    past half their life are refreshed in the background while they still answer."""
    if not getattr(app_state, "ready", False):
        raise ServiceUnavailableError("starting")
    rt: Any = app_state.runtime
    accounts = rt.accounts
    authorization = _header(scope, b"authorization")
    principal = accounts.cached_principal(authorization)
    if principal is None:
        principal = await flights.join(
            ("key", authorization), accounts.authenticate_and_cache, authorization)
    elif accounts.principal_due(authorization):
        flights.start(("key", authorization), accounts.authenticate_and_cache, authorization)
    ns_key = ("namespace", principal.key_id, namespace_id)
    if not accounts.cached_namespace_ok(principal, namespace_id):
        await flights.join(ns_key, accounts.namespace_visible_and_cache, principal, namespace_id)
    elif accounts.namespace_due(principal, namespace_id):
        flights.start(ns_key, accounts.namespace_visible_and_cache, principal, namespace_id)
    return rt, principal


class _Flights:
    """At most one thread-pool call per key at a time; later callers share its outcome."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    def start(self, key: Hashable, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        running = self._running.get(key)
        if running is not None:
            return running
        future = asyncio.ensure_future(run_in_threadpool(function, *args))
        self._running[key] = future
        future.add_done_callback(lambda done: self._finished(key, done))
        return future

    async def join(self, key: Hashable, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.shield(self.start(key, function, *args))

    def _finished(self, key: Hashable, future: asyncio.Future[Any]) -> None:
        if self._running.get(key) is future:
            del self._running[key]
        if not future.cancelled():
            future.exception()  # retrieved: a background refresh's failure is not an error


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequestError("client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"request body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _check_payload(body: bytes) -> None:
    """`{"inputs": {...}, "parameters": {...}}`, both optional; anything else is a 400."""
    try:
        value = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BadRequestError("request body must be a JSON object with inputs and parameters")
    for key in ("inputs", "parameters"):
        if value.get(key) is not None and not isinstance(value[key], dict):
            raise BadRequestError(f"{key} must be a JSON object")


async def _send(send: Send, status: int, body: bytes) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
