"""The one home of an inference request's checks, shared by the ASGI fast path
(``/inference/{namespace}/{route}``, :mod:`.fastpath`) and FastAPI's ``POST /v1/inference``
(:mod:`plughost.api.routes_inference`): the body's shape, and the caller's key and namespace checked
against the short-lived in-memory cache.

Cache misses go to the thread pool once however many requests wait on them
(:class:`Flights`); entries past half their life are refreshed in the background while
they still answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool

from plughost.errors import BadRequestError, UnsupportedMediaTypeError
from plughost.services.accounts import Accounts, Principal

# curl's `-d` sends this type by default; the body must still be a JSON object.
_CURL_DEFAULT = "application/x-www-form-urlencoded"


def check_content_type(content_type: str | None) -> None:
    """Return when the declared media type can carry the JSON body: none declared,
    ``application/json`` or ``*/*+json``, or curl's ``-d`` default; 415 otherwise."""
    if not content_type:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media in ("application/json", _CURL_DEFAULT) or media.endswith("+json"):
        return
    raise UnsupportedMediaTypeError(
        f"content type {media!r} is not supported: send the body as application/json",
        {"content_type": media},
    )


def check_call_body(raw: bytes) -> dict[str, Any]:
    """The body as a dict: one JSON object whose ``inputs`` and ``parameters``, when given
    and not null, are JSON objects; anything else (an empty body too) is a 400
    (BadRequestError) that says what is wrong with the request."""
    if not raw.strip():
        raise BadRequestError(
            'request body is empty: send a JSON object {"inputs": {...}, "parameters": {...}}'
        )
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BadRequestError(
            f"request body is a JSON {_json_kind(value)}; it must be a JSON object with "
            "inputs and parameters"
        )
    for key in ("inputs", "parameters"):
        if value.get(key) is not None and not isinstance(value[key], dict):
            raise BadRequestError(f"{key} must be a JSON object, not a JSON {_json_kind(value[key])}")
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "null")


class Flights:
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


async def caller(accounts: Accounts, authorization: str | None, flights: Flights) -> Principal:
    """The key's principal (401 AuthenticationError when it is not a live key)."""
    principal: Principal | None = accounts.cached_principal(authorization)
    if principal is None:
        return await flights.join(
            ("key", authorization), accounts.authenticate_and_cache, authorization
        )
    if accounts.principal_due(authorization):
        flights.start(("key", authorization), accounts.authenticate_and_cache, authorization)
    return principal


async def check_namespace(
    accounts: Accounts, principal: Principal, namespace_id: str, flights: Flights
) -> None:
    """Return when the key may see the namespace; 404 NotFoundError (as if it did not exist)
    otherwise."""
    key = ("namespace", principal.key_id, namespace_id)
    if not accounts.cached_namespace_ok(principal, namespace_id):
        await flights.join(key, accounts.namespace_visible_and_cache, principal, namespace_id)
    elif accounts.namespace_due(principal, namespace_id):
        flights.start(key, accounts.namespace_visible_and_cache, principal, namespace_id)
