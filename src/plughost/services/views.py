"""Wire shapes of registry records (the contract's response fields)."""

from __future__ import annotations

from typing import Any

from plughost.domain.ids import feature_uri_for
from plughost.persistence.tables import Plugin
from plughost.timeutil import iso


def scope_fields(plugin: Plugin) -> dict[str, Any]:
    if plugin.scope:
        return {"namespace_id": plugin.scope, "organization_id": plugin.organization_id}
    return {"organization_id": plugin.organization_id}


def manifest_view(plugin: Plugin, deployed_at: str | None) -> dict[str, Any]:
    """The manifest metadata object; name and version fall back to the plugin's own."""
    m = dict(plugin.manifest or {})
    keys = (
        "description",
        "input_schema",
        "output_schema",
        "parameter_schema",
        "required_vector_indexes",
        "features",
        "dependencies",
        "compute_profile",
        "serve_config",
        "cost_rates",
    )
    view: dict[str, Any] = {k: m.get(k) for k in keys}
    view["feature_extractor_name"] = m.get("feature_extractor_name") or plugin.name
    view["version"] = str(m.get("version") or plugin.version)
    view["feature_uri"] = feature_uri_for(plugin.name, plugin.version)
    view["created_at"] = iso(plugin.created_at)
    view["updated_at"] = iso(plugin.updated_at)
    view["deployed_at"] = deployed_at
    for extra in ("category", "example_input", "supported_input_types", "input_mappings"):
        if m.get(extra) is not None:
            view[extra] = m[extra]
    return view


def list_item(plugin: Plugin, deployed: bool) -> dict[str, Any]:
    return {
        "plugin_id": plugin.plugin_id,
        "name": plugin.name,
        "version": plugin.version,
        "description": plugin.description,
        "deployed": deployed,
        "validation_status": plugin.validation_status,
        "feature_uri": feature_uri_for(plugin.name, plugin.version),
        "created_at": iso(plugin.created_at),
        "updated_at": iso(plugin.updated_at),
    }


def plugin_document(
    plugin: Plugin,
    deployed: bool,
    deployment_info: dict[str, Any] | None,
    deployed_at: str | None,
    inference_name: str | None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "plugin_id": plugin.plugin_id,
        **scope_fields(plugin),
        "name": plugin.name,
        "version": plugin.version,
        "description": plugin.description,
        "s3_archive_url": plugin.archive_url,
        "code_hash": plugin.code_hash,
        "validation_status": plugin.validation_status,
        "validation_errors": plugin.validation_errors or [],
        "security_scan_passed": plugin.security_scan_passed,
        "deployed": deployed,
        "deployment_info": deployment_info,
        "manifest": manifest_view(plugin, deployed_at),
        "created_at": iso(plugin.created_at),
        "updated_at": iso(plugin.updated_at),
        "deployed_at": deployed_at,
        "resolved_inference_name": inference_name,
        "feature_uri": feature_uri_for(plugin.name, plugin.version),
        "realtime_available": plugin.has_realtime,
    }
    return doc
