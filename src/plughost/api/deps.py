"""Request dependencies: the runtime container and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from plughost.runtime import Runtime
from plughost.services.accounts import Principal
from plughost.services.uploads import Scope


async def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_principal(
    rt: RuntimeDep, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    return rt.accounts.authenticate(authorization)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def namespace_scope(namespace_id: str, principal: PrincipalDep, rt: RuntimeDep) -> Scope:
    """The namespace as a scope, after checking the caller may see it (else 404)."""
    rt.accounts.namespace_visible(principal, namespace_id)
    return Scope(organization_id=principal.organization_id, namespace_id=namespace_id)


def org_scope(principal: PrincipalDep) -> Scope:
    return Scope(organization_id=principal.organization_id, namespace_id=None)


NamespaceScope = Annotated[Scope, Depends(namespace_scope)]
OrgScope = Annotated[Scope, Depends(org_scope)]


def base_url(request: Request, rt: RuntimeDep) -> str:
    return rt.settings.public_url or str(request.base_url)
