"""Request dependencies: the runtime container and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

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


async def polled_namespace_scope(
    namespace_id: str, rt: RuntimeDep, authorization: Annotated[str | None, Header()] = None
) -> Scope:
    """Like namespace_scope, through the 2 s key/namespace cache of the inference path:
    for endpoints clients poll (status), where a database round trip per poll is waste."""
    principal = rt.accounts.cached_principal(authorization)
    if principal is None:
        principal = await run_in_threadpool(rt.accounts.authenticate_and_cache, authorization)
    if not rt.accounts.cached_namespace_ok(principal, namespace_id):
        await run_in_threadpool(rt.accounts.namespace_visible_and_cache, principal, namespace_id)
    return Scope(organization_id=principal.organization_id, namespace_id=namespace_id)


NamespaceScope = Annotated[Scope, Depends(namespace_scope)]
PolledNamespaceScope = Annotated[Scope, Depends(polled_namespace_scope)]
OrgScope = Annotated[Scope, Depends(org_scope)]


def base_url(request: Request, rt: RuntimeDep) -> str:
    return rt.settings.public_url or str(request.base_url)
