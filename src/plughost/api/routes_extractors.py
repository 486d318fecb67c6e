"""Extractor discovery, as Mixpeek's CLI and SDK call it: the plugins listed as feature
extractors (``FeatureExtractorsApi``, ``NamespaceExtractorsApi``), and the namespace
reconfigure of ``CustomPluginsNamespaceApi`` as a documented no-op.

Handlers are plain functions: FastAPI runs them in its thread pool, where the database
reads may block."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query

from plughost.api.deps import NamespaceScope, PrincipalDep, RuntimeDep
from plughost.api.extractor_schemas import (
    FEATURE_EXTRACTORS,
    NS_EXTRACTORS,
    RECONFIGURE,
    ReconfigureRequest,
    ReconfigureResponse,
)
from plughost.domain.scope import PluginScope
from plughost.server.wiring import Runtime
from plughost.services import extractors
from plughost.services.accounts import Principal

router = APIRouter(tags=["extractors"])

Source = Literal["all", "custom", "builtin", "community"]


@router.get(FEATURE_EXTRACTORS)
def list_feature_extractors(
    principal: PrincipalDep,
    rt: RuntimeDep,
    x_namespace: Annotated[str | None, Header()] = None,
) -> list[dict[str, Any]]:
    """The deployed plugins as feature extractors: of the `X-Namespace` namespace, else of
    every namespace the key reaches (one entry per extractor id)."""
    scopes = _namespaces(rt, principal, x_namespace)
    return extractors.collection_extractors(rt.db, rt.deployments, scopes)


@router.get(FEATURE_EXTRACTORS + "/{feature_extractor_id}")
def get_feature_extractor(
    feature_extractor_id: str,
    principal: PrincipalDep,
    rt: RuntimeDep,
    x_namespace: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """One deployed extractor by plugin id (`name_1_0_0`) or name (its newest version)."""
    scopes = _namespaces(rt, principal, x_namespace)
    return extractors.find_feature_extractor(rt.db, rt.deployments, scopes, feature_extractor_id)


@router.get(NS_EXTRACTORS)
def list_namespace_extractors(
    scope: NamespaceScope,
    rt: RuntimeDep,
    source: Annotated[Source | None, Query(description="only `custom` extractors exist")] = None,
    include_disabled: Annotated[
        bool, Query(description="also the plugins that are not deployed")
    ] = False,
) -> dict[str, Any]:
    """The namespace's plugins as extractors (`UnifiedExtractorListResponse`); plughost has
    no builtin extractors, so `source=builtin` lists none."""
    return extractors.listing(rt.db, rt.deployments, scope, source, include_disabled)


@router.get(NS_EXTRACTORS + "/{extractor_id}")
def get_namespace_extractor(
    scope: NamespaceScope, rt: RuntimeDep, extractor_id: str
) -> dict[str, Any]:
    """One of the namespace's plugins as an extractor, deployed or not."""
    return extractors.find_extractor(rt.db, rt.deployments, scope, extractor_id)


@router.post(RECONFIGURE)
def reconfigure_namespace(
    scope: NamespaceScope, rt: RuntimeDep, body: ReconfigureRequest
) -> ReconfigureResponse:
    """A no-op kept for Mixpeek's workflow: Mixpeek rebuilds the namespace's vector store
    after a deploy; plughost stores no vectors (plugins answer embeddings, the caller stores
    them), so nothing is deleted and nothing needs re-ingesting. The body must still say
    `{"confirm": true}`, as Mixpeek asks."""
    names = sorted(
        {
            index["name"]
            for item in extractors.unified_extractors(rt.db, rt.deployments, scope)
            for index in item["required_vector_indexes"]
        }
    )
    return ReconfigureResponse(
        namespace_id=str(scope.namespace_id),
        status="no_changes_needed",
        previous_points_count=0,
        vectors_added=[],
        vectors_total=names,
        collections_to_reprocess=[],
        message="plughost keeps no vector store: reconfigure changes nothing",
    )


def _namespaces(rt: Runtime, principal: Principal, x_namespace: str | None) -> list[PluginScope]:
    """The namespace named by `X-Namespace` (checked), else every one the key reaches."""
    org = principal.organization_id
    if x_namespace:
        rt.accounts.namespace_visible(principal, x_namespace)
        return [PluginScope(org, x_namespace)]
    return [
        PluginScope(org, ns["namespace_id"])
        for ns in rt.accounts.list_namespaces(org)
        if principal.reaches(ns["namespace_id"])
    ]
