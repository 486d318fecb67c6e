"""The wire shapes of registry records, built from plugin rows (no database needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from plughost.persistence.tables import Plugin
from plughost.services import views

CREATED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def plugin(**columns: Any) -> Plugin:
    values: dict[str, Any] = {
        "id": 7,
        "plugin_id": "embed_1_2_0",
        "organization_id": "org_a",
        "scope": "ns_a",
        "name": "embed",
        "version": "1.2.0",
        "description": "d",
        "storage_key": "k",
        "archive_url": "file:///k",
        "code_hash": "c0de",
        "validation_status": "passed",
        "validation_errors": None,
        "security_scan_passed": True,
        "has_realtime": True,
        "manifest": {},
        "created_at": CREATED,
        "updated_at": CREATED,
    }
    values.update(columns)
    return Plugin(**values)


def test_a_namespace_plugin_names_its_namespace_and_an_organization_plugin_does_not() -> None:
    assert views.scope_fields(plugin()) == {"namespace_id": "ns_a", "organization_id": "org_a"}
    assert views.scope_fields(plugin(scope="")) == {"organization_id": "org_a"}


def test_the_manifest_view_falls_back_to_the_plugins_own_name_and_version() -> None:
    view = views.manifest_view(plugin(manifest=None), None)
    assert view["feature_extractor_name"] == "embed" and view["version"] == "1.2.0"
    assert view["feature_uri"] == "mixpeek://embed@1.2.0"
    assert view["description"] is None and view["serve_config"] is None
    assert view["created_at"] == "2024-01-02T03:04:05Z" and view["deployed_at"] is None


def test_the_manifest_view_shows_the_manifests_fields_and_extras_only_when_set() -> None:
    manifest = {
        "feature_extractor_name": "Embedder",
        "version": 3,
        "description": "from manifest",
        "serve_config": {"num_replicas": 2},
        "category": "text",
        "example_input": None,
        "not_a_contract_field": "secret",
    }
    view = views.manifest_view(plugin(manifest=manifest), "2024-02-01T00:00:00Z")
    assert view["feature_extractor_name"] == "Embedder" and view["version"] == "3"
    assert view["serve_config"] == {"num_replicas": 2} and view["category"] == "text"
    assert "example_input" not in view and "not_a_contract_field" not in view
    assert view["deployed_at"] == "2024-02-01T00:00:00Z"


def test_the_manifest_view_is_a_copy() -> None:
    row = plugin(manifest={"serve_config": {"num_replicas": 2}})
    views.manifest_view(row, None)["feature_extractor_name"] = "changed"
    assert row.manifest == {"serve_config": {"num_replicas": 2}}


def test_a_list_item_carries_the_serving_flag_given() -> None:
    item = views.list_item(plugin(), deployed=True)
    assert item == {
        "plugin_id": "embed_1_2_0",
        "name": "embed",
        "version": "1.2.0",
        "description": "d",
        "deployed": True,
        "validation_status": "passed",
        "feature_uri": "mixpeek://embed@1.2.0",
        "created_at": "2024-01-02T03:04:05Z",
        "updated_at": "2024-01-02T03:04:05Z",
    }


def test_the_plugin_document_holds_every_contract_field() -> None:
    info = {"ray_deployment_name": "custom_plugin_embed_1_2_0"}
    doc = views.plugin_document(plugin(), True, info, "2024-02-01T00:00:00Z", "custom_plugin_x")
    assert doc["deployment_info"] is info and doc["deployed"] is True
    assert doc["validation_errors"] == []  # a null column is an empty list on the wire
    assert doc["s3_archive_url"] == "file:///k" and doc["code_hash"] == "c0de"
    assert doc["resolved_inference_name"] == "custom_plugin_x"
    assert doc["realtime_available"] is True and doc["namespace_id"] == "ns_a"
    assert doc["manifest"]["deployed_at"] == doc["deployed_at"] == "2024-02-01T00:00:00Z"
    assert "storage_key" not in doc and "id" not in doc  # server-side columns stay inside


def test_the_document_of_an_undeployed_organization_plugin() -> None:
    doc = views.plugin_document(plugin(scope="", has_realtime=False), False, None, None, None)
    assert "namespace_id" not in doc and doc["organization_id"] == "org_a"
    assert doc["deployed"] is False and doc["deployment_info"] is None
    assert doc["deployed_at"] is None and doc["realtime_available"] is False
