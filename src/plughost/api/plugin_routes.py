"""The registry endpoints a namespace and the organization both have, made once.

``/v1/namespaces/{namespace_id}/plugins...`` (:mod:`.routes_namespace`) and
``/v1/plugins...`` (:mod:`.routes_org`) differ only in the scope dependency; each module
calls these with its own router and scope. Registration order matters to FastAPI (a
``/{plugin_id}`` route shadows later fixed paths), so the two groups are added separately.

No ``from __future__ import annotations`` here: FastAPI reads each handler's annotations,
and the scope's (a local of the factory) must be an object, not a string.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from plughost.api.deps import RuntimeDep, base_url
from plughost.api.schemas import ConfirmUploadRequest, CreateUploadRequest
from plughost.domain.scope import PluginScope

BaseUrl = Annotated[str, Depends(base_url)]
ScopeOf = Callable[..., PluginScope]


def add_upload_routes(router: APIRouter, scope_of: ScopeOf) -> None:
    """``POST /uploads`` (a presigned upload URL) and ``POST /uploads/{upload_id}/confirm``."""
    Scope = Annotated[PluginScope, Depends(scope_of)]

    @router.post("/uploads")
    def create_upload(
        scope: Scope,
        rt: RuntimeDep,
        body: CreateUploadRequest,
        url: BaseUrl,
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
    async def confirm_upload(
        scope: Scope,
        rt: RuntimeDep,
        upload_id: str,
        body: Annotated[ConfirmUploadRequest | None, Body()] = None,
    ) -> dict[str, Any]:
        # async, so that it goes through the intake gate; the work runs in a worker thread
        body = body or ConfirmUploadRequest()
        return await rt.uploads.confirm(scope, upload_id, body.etag, body.file_size_bytes)


def add_plugin_routes(router: APIRouter, scope_of: ScopeOf) -> None:
    """``GET ""`` (list), ``GET /{plugin_id}`` and ``DELETE /{plugin_id}``: add them after
    every other ``GET /something`` of the router."""
    Scope = Annotated[PluginScope, Depends(scope_of)]

    @router.get("")
    def list_plugins(scope: Scope, rt: RuntimeDep) -> dict[str, Any]:
        return rt.plugins.list(scope)

    @router.get("/{plugin_id:plugin_id}")
    def get_plugin(
        scope: Scope,
        rt: RuntimeDep,
        plugin_id: str,
        url: BaseUrl,
        return_presigned_urls: bool = False,
    ) -> dict[str, Any]:
        download = rt.download_url(scope, plugin_id, url) if return_presigned_urls else None
        return rt.plugins.get(scope, plugin_id, download)

    @router.delete("/{plugin_id:plugin_id}")
    def delete_plugin(
        scope: Scope, rt: RuntimeDep, plugin_id: str
    ) -> dict[str, Any]:
        # a plain function: FastAPI runs it in the thread pool (it waits for the undeploy)
        return rt.plugins.delete(scope, plugin_id)
