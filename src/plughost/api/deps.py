"""Request dependencies: the runtime container and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from plughost.domain.scope import PluginScope
from plughost.server.wiring import Runtime
from plughost.services.accounts import Principal


async def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_principal(
    rt: RuntimeDep,
    # the Bearer security scheme of the OpenAPI document, not a parameter of each operation
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    return rt.accounts.authenticate(authorization)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def namespace_scope(namespace_id: str, principal: PrincipalDep, rt: RuntimeDep) -> PluginScope:
    """The namespace as a scope, after checking the caller may see it (else 404)."""
    rt.accounts.namespace_visible(principal, namespace_id)
    return PluginScope(organization_id=principal.organization_id, namespace_id=namespace_id)


def org_scope(principal: PrincipalDep) -> PluginScope:
    return PluginScope(organization_id=principal.organization_id, namespace_id=None)


NamespaceScope = Annotated[PluginScope, Depends(namespace_scope)]
OrgScope = Annotated[PluginScope, Depends(org_scope)]


def base_url(request: Request, rt: RuntimeDep) -> str:
    return rt.settings.public_url or str(request.base_url)
