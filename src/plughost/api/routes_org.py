"""Organization-level twins: /v1/plugins..."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from plughost.api.deps import OrgScope, RuntimeDep, base_url
from plughost.api.schemas import ConfirmUploadRequest, CreateUploadRequest

router = APIRouter(prefix="/v1/plugins", tags=["organization plugins"])
BaseUrl = Annotated[str, Depends(base_url)]


@router.post("/uploads")
def create_upload(
    scope: OrgScope, rt: RuntimeDep, body: CreateUploadRequest, url: BaseUrl
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
    scope: OrgScope,
    rt: RuntimeDep,
    upload_id: str,
    body: Annotated[ConfirmUploadRequest | None, Body()] = None,
) -> dict[str, Any]:
    body = body or ConfirmUploadRequest()
    return rt.uploads.confirm(scope, upload_id, body.etag, body.file_size_bytes)


@router.get("")
def list_plugins(scope: OrgScope, rt: RuntimeDep) -> dict[str, Any]:
    return rt.plugins.list(scope)  # an organization scope already answers organization_id


@router.get("/{plugin_id}")
def get_plugin(
    scope: OrgScope,
    rt: RuntimeDep,
    plugin_id: str,
    url: BaseUrl,
    return_presigned_urls: bool = False,
) -> dict[str, Any]:
    download = rt.download_url(scope, plugin_id, url) if return_presigned_urls else None
    return rt.plugins.get(scope, plugin_id, download)


@router.delete("/{plugin_id}")
def delete_plugin(scope: OrgScope, rt: RuntimeDep, plugin_id: str) -> dict[str, Any]:
    return rt.plugins.delete(scope, plugin_id)
