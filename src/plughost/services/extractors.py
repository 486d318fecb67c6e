"""Plugins seen as feature extractors: the discovery shapes of Mixpeek's extractor routes.

plughost has no builtin extractors, so every extractor it lists is a custom plugin that
passed validation: the namespace's own plugins and the organization plugins enabled in it.
A listing shows the deployed ones; ``include_disabled`` adds the others (Mixpeek's query
parameter of the same name). The vector indexes an extractor declares come from the
``features`` of its manifest (stored normalised, so the documented key names are present).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy import select

from plughost.domain.ids import feature_uri_for
from plughost.domain.scope import PluginScope
from plughost.errors import NotFoundError
from plughost.persistence.db import Database
from plughost.persistence.tables import NamespacePlugin, Plugin
from plughost.timeutil import iso

SOURCES = ("all", "custom", "builtin", "community")
"""The ``source`` filters Mixpeek accepts; only ``custom`` extractors exist here."""
DEFAULT_ICON = "box"


class ServingPlugins(Protocol):
    """What the listing needs from the deployment side."""

    def serving_plugins(self, namespace_id: str | None) -> set[int]: ...


def namespace_plugins(db: Database, scope: PluginScope) -> list[Plugin]:
    """The passed plugins usable in ``scope``'s namespace: its own, then the organization
    plugins enabled in it, each in upload order."""
    assert scope.namespace_id is not None
    with db.session() as s:
        own = s.scalars(
            select(Plugin)
            .where(
                Plugin.organization_id == scope.organization_id,
                Plugin.scope == scope.namespace_id,
                Plugin.validation_status == "passed",
            )
            .order_by(Plugin.created_at, Plugin.id)
        ).all()
        enabled = s.scalars(
            select(Plugin)
            .join(NamespacePlugin, NamespacePlugin.plugin_pk == Plugin.id)
            .where(
                NamespacePlugin.namespace_id == scope.namespace_id,
                Plugin.organization_id == scope.organization_id,
                Plugin.validation_status == "passed",
            )
            .order_by(Plugin.created_at, Plugin.id)
        ).all()
        rows = [*own, *enabled]
        for row in rows:
            s.expunge(row)
    return rows


def unified_extractors(
    db: Database,
    hooks: ServingPlugins,
    scope: PluginScope,
    include_disabled: bool = False,
) -> list[dict[str, Any]]:
    """``UnifiedExtractorResponse`` bodies of the namespace's extractors."""
    serving = hooks.serving_plugins(scope.namespace_id)
    return [
        unified_view(p, p.id in serving)
        for p in namespace_plugins(db, scope)
        if include_disabled or p.id in serving
    ]


def listing(
    db: Database,
    hooks: ServingPlugins,
    scope: PluginScope,
    source: str | None,
    include_disabled: bool,
) -> dict[str, Any]:
    """The ``UnifiedExtractorListResponse`` of ``GET /v1/namespaces/{ns}/extractors``."""
    extractors = [] if source == "builtin" or source == "community" else (
        unified_extractors(db, hooks, scope, include_disabled)
    )
    return {
        "success": True,
        "extractors": extractors,
        "total": len(extractors),
        "namespace_id": scope.namespace_id,
        "builtin_count": 0,
        "custom_count": len(extractors),
    }


def find_extractor(
    db: Database, hooks: ServingPlugins, scope: PluginScope, extractor_id: str
) -> dict[str, Any]:
    """One extractor of the namespace by plugin id (``name_1_0_0``) or by name (its newest
    deployed version, else its newest version), undeployed ones included."""
    found = pick(unified_extractors(db, hooks, scope, include_disabled=True), extractor_id)
    if found is None:
        raise NotFoundError(
            f"extractor {extractor_id!r} not found in namespace {scope.namespace_id!r}"
        )
    return found


def pick(extractors: list[dict[str, Any]], extractor_id: str) -> dict[str, Any] | None:
    """The extractor whose id is ``extractor_id``, else the newest (deployed first) of that
    name."""
    for item in extractors:
        if item["feature_extractor_id"] == extractor_id:
            return item
    named = [e for e in extractors if e["feature_extractor_name"] == extractor_id]
    named.sort(key=lambda e: (bool(e["deployed"]), e["created_at"] or ""))
    return named[-1] if named else None


def collection_extractors(
    db: Database, hooks: ServingPlugins, scopes: Iterable[PluginScope]
) -> list[dict[str, Any]]:
    """``FeatureExtractorResponseModel`` bodies of the deployed extractors of ``scopes``
    (namespaces), one per extractor id."""
    seen: dict[str, dict[str, Any]] = {}
    for scope in scopes:
        for item in unified_extractors(db, hooks, scope):
            seen.setdefault(item["feature_extractor_id"], item)
    return [collection_view(item) for item in seen.values()]


def find_feature_extractor(
    db: Database, hooks: ServingPlugins, scopes: Iterable[PluginScope], extractor_id: str
) -> dict[str, Any]:
    """One deployed extractor of ``scopes`` in the collection-level shape, by plugin id or
    by name (see :func:`pick`)."""
    deployed = [item for scope in scopes for item in unified_extractors(db, hooks, scope)]
    found = pick(deployed, extractor_id)
    if found is None:
        raise NotFoundError(f"feature extractor {extractor_id!r} not found")
    return collection_view(found)


def collection_view(unified: dict[str, Any]) -> dict[str, Any]:
    """The collection-level shape: the same fields, the optional ones made present."""
    keys = (
        "feature_extractor_name", "version", "feature_extractor_id", "description", "icon",
        "source", "input_schema", "output_schema", "position_fields",
    )
    view = {k: unified[k] for k in keys}
    view["parameter_schema"] = unified["parameter_schema"] or {}
    view["supported_input_types"] = unified["supported_input_types"] or []
    view["max_inputs"] = unified["max_inputs"] or {}
    view["default_parameters"] = unified["default_parameters"] or {}
    view["required_vector_indexes"] = unified["required_vector_indexes"] or []
    view["required_payload_indexes"] = unified["required_payload_indexes"] or []
    return view


def unified_view(plugin: Plugin, deployed: bool) -> dict[str, Any]:
    """One plugin as Mixpeek's ``UnifiedExtractorResponse``."""
    m = dict(plugin.manifest or {})
    name = plugin.name
    parameter_schema = _dict(m.get("parameter_schema"))
    return {
        "feature_extractor_name": name,
        "version": plugin.version,
        "feature_extractor_id": plugin.plugin_id,
        "source": "custom",
        "description": plugin.description or _str(m.get("description")) or "",
        "icon": _str(m.get("icon")) or DEFAULT_ICON,
        "input_schema": _dict(m.get("input_schema")) or {},
        "output_schema": _dict(m.get("output_schema")) or {},
        "parameter_schema": parameter_schema,
        "supported_input_types": _strings(m.get("supported_input_types")),
        "max_inputs": _int_map(m.get("max_inputs")),
        "default_parameters": _defaults(parameter_schema),
        "required_vector_indexes": vector_indexes(plugin, m.get("features")),
        "required_payload_indexes": [],
        "position_fields": _strings(m.get("position_fields")),
        "feature_uri": feature_uri_for(name, plugin.version),
        "plugin_id": plugin.plugin_id,
        "deployed": deployed,
        "validation_status": plugin.validation_status,
        "created_at": iso(plugin.created_at),
        "updated_at": iso(plugin.updated_at),
    }


def vector_indexes(plugin: Plugin, features: Any) -> list[dict[str, Any]]:
    """A ``VectorIndexDefinition`` per embedding feature of the manifest."""
    if not isinstance(features, list):
        return []
    out = []
    for feature in features:
        if not isinstance(feature, dict) or feature.get("feature_type") != "embedding":
            continue
        short = _str(feature.get("feature_name"))
        if not short:
            continue
        dims = feature.get("embedding_dim")
        dims = dims if isinstance(dims, int) and not isinstance(dims, bool) and dims > 0 else None
        described = f"{short}: embeddings of {plugin.name} {plugin.version}"
        index: dict[str, Any] = {
            "name": f"{plugin.plugin_id}_{short}",
            "description": described,
            "dimensions": dims,
            "type": "dense",
            "distance": _str(feature.get("distance_metric")) or "cosine",
        }
        out.append({
            "feature_uri": f"{feature_uri_for(plugin.name, plugin.version)}/{short}",
            "name": short,
            "description": described,
            "type": "single",
            "index": index,
        })
    return out


def _dict(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, dict) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)]


def _int_map(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {
        str(k): v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)
    }


def _defaults(parameter_schema: dict[str, Any] | None) -> dict[str, Any]:
    """The ``default`` of each property of the parameter schema."""
    props = (parameter_schema or {}).get("properties")
    if not isinstance(props, dict):
        return {}
    return {
        str(k): v["default"] for k, v in props.items() if isinstance(v, dict) and "default" in v
    }
