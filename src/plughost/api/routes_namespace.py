"""Namespace-scoped registry endpoints: /v1/namespaces/{namespace_id}/plugins... (those the
organization level also has come from :mod:`.plugin_routes`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from plughost.api.deps import NamespaceScope, RuntimeDep, namespace_scope
from plughost.api.plugin_routes import add_plugin_routes, add_upload_routes
from plughost.api.schemas import EnableRequest
from plughost.api.streams import check_declared_length, file_chunks, parse_plugin_form

router = APIRouter(prefix="/v1/namespaces/{namespace_id}/plugins", tags=["namespace plugins"])

add_upload_routes(router, namespace_scope)


@router.post("")
async def upload_plugin(scope: NamespaceScope, rt: RuntimeDep, request: Request) -> dict[str, Any]:
    limit = rt.settings.max_archive_bytes + rt.settings.multipart_overhead_bytes
    check_declared_length(request, limit)
    form = await parse_plugin_form(request, limit)
    try:
        return await rt.uploads.upload_multipart(
            scope, form.name, form.version, form.description, file_chunks(form.file)
        )
    finally:
        await form.file.close()


@router.get("/available")
def list_available(scope: NamespaceScope, rt: RuntimeDep) -> dict[str, Any]:
    return rt.plugins.available(scope)


@router.post("/org/{plugin_id:plugin_id}/enable")
def enable_org_plugin(
    scope: NamespaceScope,
    rt: RuntimeDep,
    plugin_id: str,
    body: Annotated[EnableRequest | None, Body()] = None,
) -> dict[str, Any]:
    body = body or EnableRequest()
    result = rt.plugins.enable(scope, plugin_id, body.params)
    result["deployment_status"] = rt.on_enable(scope, plugin_id, body.deploy)
    return result


@router.post("/org/{plugin_id:plugin_id}/disable")
def disable_org_plugin(scope: NamespaceScope, rt: RuntimeDep, plugin_id: str) -> dict[str, Any]:
    return rt.plugins.disable(scope, plugin_id)


# after /available and /org/...: GET /{plugin_id} would shadow them
add_plugin_routes(router, namespace_scope)
