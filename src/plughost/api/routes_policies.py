"""Namespace policies, an admin API of plughost's own (not part of Mixpeek's surface, and
left out of the OpenAPI document):

GET /v1/admin/namespaces/{namespace_id}/policy
PUT /v1/admin/namespaces/{namespace_id}/policy   {max_replicas, max_memory_mb,
    max_batch_jobs, requests_per_second, key_requests_per_second, egress_allow}: each
    optional; null clears it; the answer is the whole policy.

An admin key is needed (as for ``/metrics``): a key of the bootstrap organization that
reaches every namespace; any other key is 403. An unknown namespace is 404.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from starlette.concurrency import run_in_threadpool

from plughost.api.deps import RuntimeDep
from plughost.errors import BadRequestError, ForbiddenError, ValidationError
from plughost.server.wiring import Runtime
from plughost.services.accounts import DEFAULT_ORG
from plughost.services.policies import PolicyBook

router = APIRouter(prefix="/v1/admin/namespaces", tags=["admin"], include_in_schema=False)
MAX_POLICY_BODY = 128 * 1024


def _admin(rt: Runtime, authorization: str | None) -> PolicyBook:
    principal = rt.accounts.authenticate(authorization)
    if principal.organization_id != DEFAULT_ORG or principal.namespaces is not None:
        raise ForbiddenError(
            "namespace policies need an admin key (a key of the bootstrap "
            "organization that reaches every namespace)"
        )
    assert rt.policies is not None
    return rt.policies


@router.get("/{namespace_id}/policy")
def get_policy(
    namespace_id: str,
    rt: RuntimeDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> dict[str, Any]:
    book = _admin(rt, authorization)
    return {"success": True, "policy": book.get(namespace_id).to_json()}


@router.put("/{namespace_id}/policy")
async def put_policy(
    namespace_id: str,
    request: Request,
    rt: RuntimeDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> dict[str, Any]:
    book = await run_in_threadpool(_admin, rt, authorization)
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_POLICY_BODY:
            raise BadRequestError(f"a policy body is at most {MAX_POLICY_BODY} bytes")
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValidationError("the policy must be a JSON object")
    policy = await run_in_threadpool(book.put, namespace_id, body)
    return {"success": True, "policy": policy.to_json()}
