"""Realtime inference by name: POST /v1/inference (by inference_name or feature_uri).

The route prefix and the alias (`/inference/{namespace}/{route}`) are served by
:mod:`plughost.dataplane.fastpath` ahead of FastAPI, with no FastAPI route of their own. The body checks and the
cached key and namespace checks are the fast path's (:mod:`plughost.dataplane.request`), and the
replica's JSON goes out as is.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from plughost.api.deps import RuntimeDep
from plughost.api.openapi_inference import INFERENCE_EXTRA, INFERENCE_RESPONSES
from plughost.api.streams import check_declared_length, limited_stream
from plughost.backends.stream import CallStream
from plughost.dataplane.body import MAX_BODY_BYTES
from plughost.dataplane.request import (
    Flights,
    caller,
    check_call_body,
    check_content_type,
    check_namespace,
)
from plughost.dataplane.streaming import (
    EVENT_STREAM,
    NDJSON,
    ClientGone,
    header_timeout,
    stream_chunks,
    unless_gone,
    wants_events,
)
from plughost.domain.ids import parse_feature_uri
from plughost.errors import BadRequestError

router = APIRouter(tags=["inference"])


@router.post("/v1/inference", responses=INFERENCE_RESPONSES, openapi_extra=INFERENCE_EXTRA)
async def infer_by_name(
    request: Request,
    rt: RuntimeDep,
    authorization: str | None = Header(default=None, include_in_schema=False),
    x_namespace: str | None = Header(default=None),
) -> Response:
    flights: Flights = request.app.state.flights
    principal = await caller(rt.accounts, authorization, flights)
    check_content_type(request.headers.get("content-type"))
    timeout = header_timeout(request.headers.get("x-request-timeout"))
    check_declared_length(request, MAX_BODY_BYTES)
    body = check_call_body(b"".join([c async for c in limited_stream(request, MAX_BODY_BYTES)]))
    namespace_id = x_namespace or await run_in_threadpool(rt.accounts.only_namespace, principal)
    await check_namespace(rt.accounts, principal, namespace_id, flights)
    rt.inference.admit(namespace_id, principal.key_id)  # the namespace's quotas (429)
    feature_uri = _opt_str(body, "feature_uri")
    if feature_uri is not None:
        parse_feature_uri(feature_uri)  # checked even when inference_name decides
    name = rt.inference.resolve_inference_name(
        namespace_id, _opt_str(body, "inference_name"), feature_uri
    )
    inputs, parameters = body.get("inputs") or {}, body.get("parameters") or {}
    try:
        out = await unless_gone(
            request.receive,
            rt.inference.infer_json(namespace_id, name, inputs, parameters, timeout),
        )
    except ClientGone:
        return Response(status_code=499)  # nobody reads it: the client has gone
    if isinstance(out, CallStream):
        events = wants_events(request.headers.get("accept"))
        return StreamingResponse(
            stream_chunks(out, events),
            media_type=EVENT_STREAM if events else NDJSON,
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    return Response(content=out, media_type="application/json")


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequestError(f"{key} must be a string")
    return value
