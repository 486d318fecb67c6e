"""The realtime request path as a plain ASGI middleware, ahead of FastAPI's routing.

`POST /inference/{namespace_id}/{route}` is the hot path: the body goes to a replica as is,
the key and namespace checks hit an in-memory cache, and nothing here touches the database
on a cache hit. Profiling showed FastAPI's routing, dependencies and thread-pool hand-offs
cost several times what the replica itself spends on a small plugin.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plughost.api.errors import error_body
from plughost.errors import BadRequestError, PayloadTooLargeError, PlughostError, ServiceUnavailableError

log = logging.getLogger("plughost.api")

PREFIX = "/inference/"
MAX_BODY_BYTES = 64 * 1024 * 1024
_JSON_HEADERS = [(b"content-type", b"application/json")]


class InferenceFastPath:
    """Answers `/inference/...` itself; every other request goes on to the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "POST" or not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        parts = path[len(PREFIX):].split("/")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            await self.app(scope, receive, send)
            return
        try:
            out = await self._handle(scope, receive, parts[0], parts[1])
        except PlughostError as exc:
            await _send(send, exc.status_code,
                        orjson.dumps(error_body(exc.status_code, exc.message, exc.error_type, exc.details)))
            return
        except Exception as exc:  # the error body, never a dropped connection
            log.exception("inference request failed")
            await _send(send, 500, orjson.dumps(error_body(
                500, f"internal error: {type(exc).__name__}", "InternalServerError")))
            return
        await _send(send, 200, out)

    async def _handle(self, scope: Scope, receive: Receive, namespace_id: str, route: str) -> bytes:
        app_state = scope["app"].state
        if not getattr(app_state, "ready", False):
            raise ServiceUnavailableError("starting")
        rt: Any = app_state.runtime
        authorization = _header(scope, b"authorization")
        principal = rt.accounts.cached_principal(authorization)
        if principal is None:
            principal = await run_in_threadpool(rt.accounts.authenticate_and_cache, authorization)
        if not rt.accounts.cached_namespace_ok(principal, namespace_id):
            await run_in_threadpool(rt.accounts.namespace_visible_and_cache, principal, namespace_id)
        body = await _read_body(receive)
        _check_payload(body)
        return bytes(await rt.deployments.infer_body(namespace_id, route, body))


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
