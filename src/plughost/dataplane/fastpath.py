"""The two hot paths as a plain ASGI app wrapped around the FastAPI app.

- `POST /inference/{namespace_id}/{route}`: the body goes to a replica as is;
- `GET /v1/namespaces/{namespace_id}/plugins/{plugin_id}/status`: what clients poll while a
  deployment runs, answered from the in-memory release board.

The key and namespace checks hit an in-memory cache, and nothing here touches the database
on a cache hit (a miss goes to the thread pool once); they and the body checks live in
:mod:`.request`, shared with ``POST /v1/inference``. Every other request, and the
lifespan, go on to FastAPI. Profiling showed FastAPI's middleware stack, routing,
dependencies and thread-pool hand-offs cost several times what the replica itself spends on
a small plugin, and that status polls were dominated by them and by database reads.

FastAPI keeps only what the fast path cannot do without: the status route stays declared
for the OpenAPI schema and serves the SSE watch (``?watch=``), which passes through here.
``POST /inference/{namespace_id}/{route}`` is declared to FastAPI by a documentation-only
route (:mod:`plughost.api.openapi`) that this class always answers first; FastAPI still answers the
path's other methods (405 with ``Allow: POST``).

``OPTIONS`` on any path is answered here too: 204 with ``Allow`` listing the methods the
path's routes take (plus HEAD where GET is, and OPTIONS), 404 when no route has the path.
``HEAD`` on a path that takes GET is the GET with its headers and without its body (FastAPI's
routes do not answer HEAD themselves).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plughost.backends.stream import CallStream
from plughost.dataplane.body import read_capped
from plughost.dataplane.request import (
    Flights,
    caller,
    check_call_body,
    check_content_type,
    check_namespace,
)
from plughost.dataplane.streaming import (
    ClientGone,
    header_timeout,
    send_stream,
    unless_gone,
    wants_events,
)
from plughost.domain.scope import PluginScope
from plughost.errors import NotFoundError, ServiceUnavailableError, wire_error

log = logging.getLogger("plughost.api")

PREFIX = "/inference/"
STATUS_PREFIX = "/v1/namespaces/"
_JSON_HEADERS = ((b"content-type", b"application/json"),)


class FastPath:
    """Answers inference calls and status polls itself; everything else goes to ``app``.

    ``state``: the FastAPI app's state, where the lifespan puts the runtime."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state
        self.flights = Flights()
        state.flights = self.flights  # POST /v1/inference shares the cache misses in flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_control(scope["path"]):
            # a route's pattern would match before a trailing newline (``$``), handing the
            # route an id the API refuses elsewhere: no route has such a path
            status, body = wire_error(NotFoundError(f"no route {scope['method']} {scope['path']!r}"))
            await _send(send, status, orjson.dumps(body))
            return
        if scope["type"] == "http" and scope["method"] in ("OPTIONS", "HEAD"):
            allowed = self.state.methods.allowed(scope["path"])
            if scope["method"] == "OPTIONS" and allowed:
                await _send_options(send, allowed)
                return
            if scope["method"] == "HEAD" and "GET" in allowed:
                scope, send = {**scope, "method": "GET"}, _bodiless(send)
        handler = _route(scope) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        kind, namespace_id, name = handler
        try:
            if kind == "inference":
                out = await self._inference(scope, receive, namespace_id, name)
                if isinstance(out, CallStream):
                    events = wants_events(_header(scope, b"accept"))
                    await send_stream(send, receive, out, events)
                    return
            else:
                out = await self._status(scope, namespace_id, name)
        except ClientGone:
            return  # the call was cancelled; nobody is left to answer
        except Exception as exc:  # noqa: BLE001 - the error body, never a dropped connection
            status, body = wire_error(exc)
            await _send(send, status, orjson.dumps(body), getattr(exc, "headers", None))
            return
        await _send(send, 200, out)

    async def _inference(
        self, scope: Scope, receive: Receive, namespace_id: str, route: str
    ) -> bytes | CallStream:
        authorization: str | None = None
        content_type: str | None = None
        timeout_header: str | None = None
        for key, value in scope["headers"]:  # one pass over the headers; the first of each
            if key == b"authorization":
                if authorization is None:
                    authorization = value.decode("latin-1")
            elif key == b"content-type":
                if content_type is None:
                    content_type = value.decode("latin-1")
            elif key == b"x-request-timeout" and timeout_header is None:
                timeout_header = value.decode("latin-1")
        rt, principal = await _authorized(self.state, authorization, namespace_id, self.flights)
        rt.inference.admit(namespace_id, principal.key_id)  # the namespace's quotas (429)
        check_content_type(content_type)
        timeout = header_timeout(timeout_header)
        body = await read_capped(receive)
        check_call_body(body)
        return await unless_gone(receive, rt.inference.infer_body(namespace_id, route, body, timeout))

    async def _status(self, scope: Scope, namespace_id: str, plugin_id: str) -> bytes:
        authorization = _header(scope, b"authorization")
        rt, principal = await _authorized(self.state, authorization, namespace_id, self.flights)
        where = PluginScope(organization_id=principal.organization_id, namespace_id=namespace_id)
        body = rt.deploy_status.cached_status(where, plugin_id)
        if body is None:
            body = await run_in_threadpool(rt.deploy_status.status, where, plugin_id)
        return orjson.dumps(body)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _has_control(path: str) -> bool:
    """Whether a path holds a control character (a decoded %0A, %0D, %00 ...)."""
    return _CONTROL.search(path) is not None


def _route(scope: Scope) -> tuple[str, str, str] | None:
    """("inference" | "status", namespace_id, route or plugin id) for a hot path, else None."""
    path: str = scope.get("path", "")
    method = scope["method"]
    if method == "POST" and path.startswith(PREFIX):
        parts = path[len(PREFIX):].split("/")
        if len(parts) == 2 and parts[0] and parts[1]:
            return "inference", parts[0], parts[1]
    elif (
        method == "GET" and path.startswith(STATUS_PREFIX) and path.endswith("/status")
        and b"watch=" not in scope.get("query_string", b"")  # the SSE watch: FastAPI's
    ):
        parts = path[len(STATUS_PREFIX):].split("/")
        # {namespace_id}/plugins/{plugin_id}/status
        if len(parts) == 4 and parts[1] == "plugins" and parts[0] and parts[2]:
            return "status", parts[0], parts[2]
    return None


async def _authorized(
    app_state: Any, authorization: str | None, namespace_id: str, flights: Flights
) -> tuple[Any, Any]:
    """The runtime and the caller, once the caller's key (the Authorization header) may see
    the namespace (else 401/404)."""
    if not app_state.ready:  # set False by create_app, True once the lifespan started
        raise ServiceUnavailableError("starting")
    rt: Any = app_state.runtime
    principal = rt.accounts.fresh_caller(authorization, namespace_id)
    if principal is None:  # a miss, or an entry to refresh
        principal = await caller(rt.accounts, authorization, flights)
        await check_namespace(rt.accounts, principal, namespace_id, flights)
    return rt, principal


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


_HEADERS_BY_LENGTH: dict[int, tuple[tuple[bytes, bytes], ...]] = {}
_HEADERS_KEPT = 4096  # body lengths whose headers are kept (a plugin's answers vary little)


def _json_headers(length: int) -> tuple[tuple[bytes, bytes], ...]:
    """The headers of a JSON answer of ``length`` bytes, built once per length (immutable:
    every answer of that length shares them)."""
    headers = _HEADERS_BY_LENGTH.get(length)
    if headers is None:
        headers = (*_JSON_HEADERS, (b"content-length", b"%d" % length))
        if len(_HEADERS_BY_LENGTH) < _HEADERS_KEPT:
            _HEADERS_BY_LENGTH[length] = headers
    return headers


async def _send(
    send: Send, status: int, body: bytes, extra: dict[str, str] | None = None
) -> None:
    headers: Any = _json_headers(len(body))
    if extra:  # an error's own headers (Retry-After of a restore hold)
        headers = [*headers, *((k.lower().encode(), v.encode()) for k, v in extra.items())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_options(send: Send, allowed: list[str]) -> None:
    headers = [(b"allow", ", ".join(allowed).encode()), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _bodiless(send: Send) -> Send:
    """``send`` for a HEAD answered by its GET: the start as is (Content-Length included), then
    one empty body; the rest is dropped (a stream ends once the server sees it complete)."""
    done = False

    async def bodiless(message: Message) -> None:
        nonlocal done
        if message["type"] == "http.response.body":
            if done:
                return
            done = True
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(message)

    return bodiless
