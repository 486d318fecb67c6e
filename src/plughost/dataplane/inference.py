"""Inference calls: a route of the in-memory table to one of its replicas, counted per call.

No database I/O on a call: the route table is an in-memory snapshot. A route missing after a
server start is held until its release is restored (or the hold ends: a real 404)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from time import perf_counter
from typing import Any, TypeVar

import orjson

from plughost.backends.base import CallFailed, Unavailable
from plughost.backends.client import BATCH_SINK
from plughost.backends.stream import CallStream
from plughost.config import Settings
from plughost.control.restore import Restores
from plughost.dataplane.routes import Route, RouteTable
from plughost.domain.ids import deployment_name_for, parse_feature_uri, plugin_id_for
from plughost.domain.quotas import RateGate
from plughost.domain.scope import PluginScope
from plughost.errors import (
    BadRequestError,
    DeadlineExceeded,
    GatewayTimeoutError,
    NotFoundError,
    PlughostError,
    PluginRuntimeError,
    ServiceUnavailableError,
)
from plughost.metrics.requests import RequestMetrics, RequestStats
from plughost.services.lookup import PluginLookup

T = TypeVar("T")


class Inference:
    """Calls plugins by route; the API's inference routes and the fast path call it."""

    def __init__(
        self,
        settings: Settings,
        routes: RouteTable,
        restores: Restores,
        request_metrics: RequestMetrics,
        lookup: PluginLookup,
        *,
        clock: Callable[[], float] = perf_counter,
        rate_gates: Mapping[str, RateGate] | None = None,
    ) -> None:
        self.settings = settings
        self.routes = routes
        self.restores = restores  # holds a call while its route is being restored
        self.request_metrics = request_metrics  # counted per call
        self.lookup = lookup  # realtime_test names a plugin, not a route
        self.clock = clock  # times each call for the latency figures
        # namespace -> its request rates (plughost.services.policies); only those with one
        self.rate_gates: Mapping[str, RateGate] = rate_gates if rate_gates is not None else {}

    def admit(self, namespace_id: str, key_id: str | None) -> None:
        """Before a realtime call: 429 QuotaExceededError (Retry-After) past the namespace's
        ``requests_per_second`` or the key's ``key_requests_per_second``. One dict probe
        when the namespace has no rate."""
        gate = self.rate_gates.get(namespace_id)
        if gate is not None:
            gate.admit(key_id)

    async def infer_json(
        self,
        namespace_id: str,
        route_name: str,
        inputs: dict[str, Any],
        parameters: dict[str, Any],
        timeout_s: float | None = None,
    ) -> bytes | CallStream:
        """Call the plugin behind a route; returns the plugin's result as JSON bytes (a
        CallStream when it streams)."""
        payload = {"inputs": inputs, "parameters": parameters}
        try:
            body = orjson.dumps(payload)
        except orjson.JSONEncodeError:
            # an integer past 64 bits (FastAPI's parser keeps it whole): write its digits;
            # the replica reads it as a float, as it does on the inference route
            try:
                body = json.dumps(payload, allow_nan=False).encode()
            except ValueError as exc:
                raise BadRequestError(f"inputs and parameters must be plain JSON: {exc}") from exc
        return await self.infer_body(namespace_id, route_name, body, timeout_s)

    async def infer_body(
        self, namespace_id: str, route_name: str, body: bytes, timeout_s: float | None = None
    ) -> bytes | CallStream:
        """The fast path: a checked `{"inputs", "parameters"}` body straight to a replica.

        ``timeout_s``: the caller's deadline (X-Request-Timeout), which may only lower the
        release's (serve_config.request_timeout_s). Returns the result's JSON, or a
        CallStream when the plugin streams. Replica failures come out as our errors:
        PluginRuntimeError (the plugin raised), GatewayTimeoutError (past the deadline; the
        call was cancelled), ServiceUnavailableError (with Retry-After while a start from zero
        runs); NotFoundError when no deployed plugin answers the route. A cancelled call
        (its client went away) is counted and cancelled in the replica."""
        route = self.routes.lookup(namespace_id, route_name)
        if route is None:
            route = await self._held_route(namespace_id, route_name)
        if route is None:
            raise NotFoundError(
                f"no deployed plugin answers /inference/{namespace_id}/{route_name}",
                {"namespace_id": namespace_id, "route": route_name})
        route = route.pick()  # a canary step's weighted choice
        stats = self.request_metrics.for_route(route)
        limit = route.group.request_timeout(self.settings.replica_call_timeout_s)
        if timeout_s is not None:
            limit = timeout_s if limit is None else min(limit, timeout_s)
        stats.in_flight += 1
        started = self.clock()
        sink = BATCH_SINK.set(stats.observe_batch)
        try:
            if limit is None:
                result = await route.group.call_body(body)
            else:
                result = await _within(limit, route.group.call_body(body, limit))
        except asyncio.CancelledError:
            stats.cancellations += 1
            raise
        except (TimeoutError, DeadlineExceeded, CallFailed, Unavailable) as exc:
            raise _counted_error(exc, route, stats, limit, "is unavailable") from exc
        finally:
            BATCH_SINK.reset(sink)
            stats.in_flight -= 1
            stats.observe(self.clock() - started)
        if isinstance(result, CallStream):
            return _MeteredStream(result, route, stats, limit)
        return result

    async def infer_whole(
        self, namespace_id: str, route_name: str, body: bytes, timeout_s: float | None = None
    ) -> bytes:
        """:meth:`infer_body` for a caller that cannot stream: a stream's items as one JSON
        array."""
        result = await self.infer_body(namespace_id, route_name, body, timeout_s)
        if isinstance(result, CallStream):
            return await result.collect()
        return result

    async def _held_route(self, namespace_id: str, route_name: str) -> Route | None:
        """The route once its release is restored after a server start: the call waits up to
        ``restore_hold_s``; None when nothing restores it (a real 404)."""

        def published() -> bool:
            return self.routes.lookup(namespace_id, route_name) is not None

        held = await self.restores.hold(
            namespace_id, route_name, self.settings.restore_hold_s, published
        )
        return self.routes.lookup(namespace_id, route_name) if held else None

    def resolve_inference_name(
        self, namespace_id: str, inference_name: str | None, feature_uri: str | None
    ) -> str:
        """The route a call by name reaches: ``inference_name`` as given, else the plugin id
        of ``feature_uri``; BadRequestError when neither is given."""
        if inference_name:
            return inference_name
        if feature_uri:
            name, version = parse_feature_uri(feature_uri)
            return plugin_id_for(name, version)
        raise BadRequestError("give inference_name (deployment name or plugin id) or feature_uri")

    async def realtime_test(
        self, scope: PluginScope, plugin_id: str, inputs: dict[str, Any], parameters: dict[str, Any]
    ) -> dict[str, Any]:
        """One call to a deployed plugin, answered as a report (a plugin's exception is a
        ``status: error`` body, not an error response)."""
        assert scope.namespace_id is not None
        self.admit(scope.namespace_id, None)  # the namespace's rate (the key's: by its caller)
        ref, _ = await asyncio.to_thread(self.lookup.load, scope, plugin_id)
        dname = deployment_name_for(ref.plugin_id)
        if self.routes.lookup(scope.namespace_id, dname) is None:
            raise ServiceUnavailableError(
                f"plugin {ref.plugin_id} is not deployed for realtime inference in "
                f"{scope.namespace_id!r}; deploy it first"
            )
        try:
            raw = await self.infer_json(scope.namespace_id, dname, inputs, parameters)
            if isinstance(raw, CallStream):
                raw = await raw.collect()
        except PluginRuntimeError as exc:
            return {
                "status": "error",
                "inference_name": dname,
                "error": exc.message,
                "message": "the plugin raised an exception",
            }
        value = orjson.loads(raw)
        return {
            "status": "success",
            "inference_name": dname,
            "raw_response": value,
            "response_type": type(value).__name__,
            "response_keys": list(value.keys()) if isinstance(value, dict) else None,
            "message": "realtime inference succeeded",
        }


async def _within(limit: float, call: Awaitable[T]) -> T:
    """``call``'s result, or TimeoutError once ``limit`` seconds have passed (the call is
    then cancelled): ``asyncio.timeout`` for one await, with one timer and no scope object,
    the request path's cheapest way to keep a deadline."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    assert task is not None
    cancelling = task.cancelling()
    fired = [False]

    def expire() -> None:
        fired[0] = True
        task.cancel()

    timer = loop.call_at(loop.time() + limit, expire)
    try:
        result = await call
    except asyncio.CancelledError:
        if fired[0] and task.uncancel() <= cancelling:
            raise TimeoutError from None  # our own cancel: the deadline passed
        raise
    finally:
        timer.cancel()
    if fired[0]:  # the deadline passed as the answer came: withdraw the cancel
        task.uncancel()
    return result


def _past_deadline(route: Route, limit: float | None) -> GatewayTimeoutError:
    within = "its deadline" if limit is None else f"the call's deadline of {limit:g} s"
    return GatewayTimeoutError(
        f"plugin {route.plugin_id} did not answer within {within}; the call was cancelled",
        {"plugin_id": route.plugin_id, "timeout_s": limit})


def _counted_error(
    exc: BaseException, route: Route, stats: RequestStats, limit: float | None, gone: str
) -> PlughostError:
    """The client's error for a failed call (a timeout of ours or the replica's, the plugin's
    exception, no replica), counted in the release's figures; ``gone``: how an unavailable
    replica is said ("is unavailable", "went away mid-stream")."""
    stats.errors += 1
    if isinstance(exc, (TimeoutError, DeadlineExceeded)):
        stats.timeouts += 1
        return _past_deadline(route, limit)
    if isinstance(exc, CallFailed):
        return _plugin_error(route, exc)
    retry_after = exc.retry_after_s if isinstance(exc, Unavailable) else None
    # a start from zero under way: Retry-After
    return ServiceUnavailableError(
        f"plugin {route.plugin_id} {gone}: {exc}", {"plugin_id": route.plugin_id}, retry_after)


def _plugin_error(route: Route, exc: CallFailed) -> PluginRuntimeError:
    return PluginRuntimeError(
        f"plugin raised {exc.type_name}: {exc.message}",
        {"plugin_id": route.plugin_id, "exception_type": exc.type_name})


class _MeteredStream(CallStream):
    """A plugin's stream on its way to the client: counted in flight until it ends, its
    errors turned into ours (and counted) as in :meth:`Inference.infer_body`."""

    def __init__(
        self, inner: CallStream, route: Route, stats: RequestStats, limit: float | None
    ) -> None:
        self._inner = inner
        self._route = route
        self._stats = stats
        self._limit = limit
        self._open = True
        stats.in_flight += 1

    def _close(self) -> None:
        if self._open:
            self._open = False
            self._stats.in_flight -= 1

    async def next_item(self) -> bytes | None:
        stats = self._stats
        try:
            item = await self._inner.next_item()
        except (DeadlineExceeded, CallFailed, Unavailable) as exc:
            self._close()
            raise _counted_error(
                exc, self._route, stats, self._limit, "went away mid-stream") from exc
        except asyncio.CancelledError:
            if self._open:
                stats.cancellations += 1
            self._close()
            raise
        if item is None:
            self._close()
        return item

    async def aclose(self) -> None:
        if self._open:  # closed before its end: the client went away
            self._stats.cancellations += 1
        self._close()
        await self._inner.aclose()
