"""Deployment endpoints: deploy, status, undeploy, realtime test, rollback by name."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import StreamingResponse

from plughost.api.deps import NamespaceScope, RuntimeDep
from plughost.api.responses import OrjsonResponse
from plughost.api.rollout_schema import DeployOptions
from plughost.api.routes_observe import status_stream
from plughost.api.schemas import RealtimeTestRequest, RollbackRequest
from plughost.domain.ids import validate_name
from plughost.domain.rollout import parse_rollout

router = APIRouter(prefix="/v1/namespaces/{namespace_id}/plugins", tags=["deployments"])


@router.post("/{plugin_id}/deploy")
def deploy(
    scope: NamespaceScope,
    rt: RuntimeDep,
    plugin_id: str,
    deployment_type: str | None = None,
    options: Annotated[DeployOptions | None, Body()] = None,
) -> dict[str, Any]:
    """``options`` (ours): the rollout's strategy and guard; none = blue-green, no bake."""
    rollout = parse_rollout(options.model_dump(exclude_unset=True) if options else None)
    return rt.deployments.deploy(scope, plugin_id, deployment_type, rollout)


# may stream, so no return type for FastAPI to encode: the dict goes through orjson
@router.get("/{plugin_id}/status", response_model=None, response_class=OrjsonResponse)
def status(
    scope: NamespaceScope, rt: RuntimeDep, plugin_id: str, watch: bool = False
) -> dict[str, Any] | StreamingResponse:
    """Declared for the OpenAPI schema; the served app answers this path in
    :mod:`plughost.dataplane.fastpath` (cached auth, the release board) with the same body.
    ``watch=true``: server-sent events until a final status (:mod:`.routes_observe`)."""
    if watch:
        return status_stream(rt, scope, plugin_id)
    return rt.deploy_status.status(scope, plugin_id)


@router.post("/{plugin_id}/undeploy")
async def undeploy(scope: NamespaceScope, rt: RuntimeDep, plugin_id: str) -> dict[str, Any]:
    return await rt.deployments.undeploy(scope, plugin_id)


@router.post("/{plugin_id}/realtime/test")
async def realtime_test(
    scope: NamespaceScope,
    rt: RuntimeDep,
    plugin_id: str,
    body: Annotated[RealtimeTestRequest | None, Body()] = None,
) -> dict[str, Any]:
    body = body or RealtimeTestRequest()
    return await rt.inference.realtime_test(
        scope, plugin_id, body.inputs or {}, body.parameters or {}
    )


@router.post("/by-name/{name}/rollback")
async def rollback(
    scope: NamespaceScope, rt: RuntimeDep, name: str, body: RollbackRequest
) -> dict[str, Any]:
    validate_name(name)
    assert scope.namespace_id is not None
    return await rt.deployments.rollback(scope.namespace_id, name, body.version)
