"""Realtime inference by name: POST /v1/inference (by inference_name or feature_uri).

The route prefix and the alias (`/inference/{namespace}/{route}`) are served by
api/fastpath.py ahead of FastAPI. Like there, keys and namespaces come from a short-lived
cache and the replica's JSON goes out as is.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Header, Request, Response
from starlette.concurrency import run_in_threadpool

from plughost.api.deps import RuntimeDep
from plughost.errors import BadRequestError
from plughost.runtime import Runtime
from plughost.services.accounts import Principal

router = APIRouter(tags=["inference"])


async def _principal(rt: Runtime, authorization: str | None) -> Principal:
    cached = rt.accounts.cached_principal(authorization)
    if cached is not None:
        return cached
    return await run_in_threadpool(rt.accounts.authenticate_and_cache, authorization)


async def _check_namespace(rt: Runtime, principal: Principal, namespace_id: str) -> None:
    if rt.accounts.cached_namespace_ok(principal, namespace_id):
        return
    await run_in_threadpool(rt.accounts.namespace_visible_and_cache, principal, namespace_id)


async def _payload(request: Request) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequestError("request body must be a JSON object with inputs and parameters")
    inputs, parameters = body.get("inputs") or {}, body.get("parameters") or {}
    if not isinstance(inputs, dict) or not isinstance(parameters, dict):
        raise BadRequestError("inputs and parameters must be JSON objects")
    return body, inputs, parameters


@router.post("/v1/inference")
async def infer_by_name(
    request: Request,
    rt: RuntimeDep,
    authorization: str | None = Header(default=None),
    x_namespace: str | None = Header(default=None),
) -> Response:
    principal = await _principal(rt, authorization)
    body, inputs, parameters = await _payload(request)
    namespace_id = x_namespace or await run_in_threadpool(rt.accounts.only_namespace, principal)
    await _check_namespace(rt, principal, namespace_id)
    name = rt.deployments.resolve_inference_name(
        namespace_id, _opt_str(body, "inference_name"), _opt_str(body, "feature_uri")
    )
    out = await rt.deployments.infer_json(namespace_id, name, inputs, parameters)
    return Response(content=out, media_type="application/json")


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequestError(f"{key} must be a string")
    return value
