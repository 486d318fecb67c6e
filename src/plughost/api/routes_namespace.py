"""Namespace-scoped registry endpoints: /v1/namespaces/{namespace_id}/plugins..."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from starlette.concurrency import run_in_threadpool

from plughost.api.deps import NamespaceScope, RuntimeDep, base_url
from plughost.api.schemas import ConfirmUploadRequest, CreateUploadRequest, EnableRequest
from plughost.api.streams import check_declared_length, file_chunks, parse_plugin_form

router = APIRouter(prefix="/v1/namespaces/{namespace_id}/plugins", tags=["namespace plugins"])
BaseUrl = Annotated[str, Depends(base_url)]


@router.post("/uploads")
def create_upload(
    scope: NamespaceScope, rt: RuntimeDep, body: CreateUploadRequest, url: BaseUrl
) -> dict[str, Any]:
    return rt.uploads.create_upload(
        scope,
        body.name,
        body.version,
        body.description,
        body.file_size_bytes,
        body.presigned_url_expiration,
        url,
    )


@router.post("/uploads/{upload_id}/confirm")
def confirm_upload(
    scope: NamespaceScope,
    rt: RuntimeDep,
    upload_id: str,
    body: Annotated[ConfirmUploadRequest | None, Body()] = None,
) -> dict[str, Any]:
    body = body or ConfirmUploadRequest()
    return rt.uploads.confirm(scope, upload_id, body.etag, body.file_size_bytes)


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


@router.get("")
def list_plugins(scope: NamespaceScope, rt: RuntimeDep) -> dict[str, Any]:
    return rt.plugins.list(scope)


@router.get("/available")
def list_available(scope: NamespaceScope, rt: RuntimeDep) -> dict[str, Any]:
    return rt.plugins.available(scope)


@router.post("/org/{plugin_id}/enable")
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


@router.post("/org/{plugin_id}/disable")
def disable_org_plugin(scope: NamespaceScope, rt: RuntimeDep, plugin_id: str) -> dict[str, Any]:
    return rt.plugins.disable(scope, plugin_id)


@router.get("/{plugin_id}")
def get_plugin(
    scope: NamespaceScope,
    rt: RuntimeDep,
    plugin_id: str,
    url: BaseUrl,
    return_presigned_urls: bool = False,
) -> dict[str, Any]:
    download = rt.download_url(scope, plugin_id, url) if return_presigned_urls else None
    return rt.plugins.get(scope, plugin_id, download)


@router.delete("/{plugin_id}")
async def delete_plugin(scope: NamespaceScope, rt: RuntimeDep, plugin_id: str) -> dict[str, Any]:
    return await run_in_threadpool(rt.plugins.delete, scope, plugin_id)
