"""plughost.services.extractors: which plugins a namespace lists as extractors (its own and
the enabled organization plugins, passed ones only, deployed unless asked), the shapes the
SDK's models read back, and hostile manifests that must not break a listing."""

from __future__ import annotations

from typing import Any

import pytest
from mixpeek.models.feature_extractor_response_model import FeatureExtractorResponseModel
from mixpeek.models.unified_extractor_response import UnifiedExtractorResponse

from plughost.errors import NotFoundError
from plughost.persistence.db import Database
from plughost.persistence.tables import NamespacePlugin, Plugin
from plughost.services import extractors

from .conftest import NS_A, NS_B, ORG_LEVEL, OTHER_TENANT, add_plugin


class Serving:
    """The deployment side: the plugin keys serving per namespace (a knob per test)."""

    def __init__(self) -> None:
        self.by_namespace: dict[str | None, set[int]] = {}

    def set_serving(self, namespace_id: str | None, *plugins: Plugin) -> None:
        self.by_namespace[namespace_id] = {p.id for p in plugins}

    def serving_plugins(self, namespace_id: str | None) -> set[int]:
        return set(self.by_namespace.get(namespace_id, set()))


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["feature_extractor_id"] for item in items]


def test_a_namespace_lists_its_deployed_plugins_and_enabled_org_plugins(db: Database) -> None:
    own = add_plugin(db, NS_A, "own_plugin")
    idle = add_plugin(db, NS_A, "idle_plugin")
    org = add_plugin(db, ORG_LEVEL, "org_plugin")
    add_plugin(db, NS_B, "elsewhere")
    add_plugin(db, OTHER_TENANT, "theirs")
    add_plugin(db, NS_A, "broken", validation_status="failed")
    with db.session() as s:
        s.add(NamespacePlugin(namespace_id="ns_a", plugin_pk=org.id))
    hooks = Serving()
    hooks.set_serving("ns_a", own, org)

    deployed = extractors.unified_extractors(db, hooks, NS_A)
    everything = extractors.unified_extractors(db, hooks, NS_A, include_disabled=True)

    assert ids(deployed) == ["own_plugin_1_0_0", "org_plugin_1_0_0"]
    assert ids(everything) == ["own_plugin_1_0_0", "idle_plugin_1_0_0", "org_plugin_1_0_0"]
    assert {e["feature_extractor_id"]: e["deployed"] for e in everything} == {
        own.plugin_id: True, idle.plugin_id: False, org.plugin_id: True,
    }
    for item in everything:
        assert UnifiedExtractorResponse.from_dict(item) is not None


def test_listing_counts_and_source_filters(db: Database) -> None:
    own = add_plugin(db, NS_A, "own_plugin")
    hooks = Serving()
    hooks.set_serving("ns_a", own)
    custom = extractors.listing(db, hooks, NS_A, "custom", False)
    assert custom["total"] == custom["custom_count"] == 1 and custom["builtin_count"] == 0
    assert custom["namespace_id"] == "ns_a"
    for source in ("builtin", "community"):
        assert extractors.listing(db, hooks, NS_A, source, True)["extractors"] == []
    assert ids(extractors.listing(db, hooks, NS_A, None, False)["extractors"]) == [own.plugin_id]


def test_features_become_vector_indexes_and_parameter_defaults_are_read() -> None:
    plugin = Plugin(
        plugin_id="emb_2_0_0", name="emb", version="2.0.0", validation_status="passed",
        description=None,
        manifest={
            "description": "from the manifest",
            "features": [
                {"feature_type": "embedding", "feature_name": "vec", "embedding_dim": 3,
                 "distance_metric": "euclidean"},
                {"feature_type": "text", "feature_name": "caption"},
            ],
            "parameter_schema": {"properties": {"k": {"default": 5}, "q": {"type": "string"}}},
            "position_fields": ["start", 7],
            "max_inputs": {"text": 2, "video": True},
        },
    )
    view = extractors.unified_view(plugin, deployed=True)
    [index] = view["required_vector_indexes"]
    assert index["name"] == "vec" and index["feature_uri"] == "mixpeek://emb@2.0.0/vec"
    assert index["index"] == {
        "name": "emb_2_0_0_vec", "description": index["description"], "dimensions": 3,
        "type": "dense", "distance": "euclidean",
    }
    assert view["description"] == "from the manifest"
    assert view["default_parameters"] == {"k": 5}
    assert view["position_fields"] == ["start"] and view["max_inputs"] == {"text": 2}
    collection = extractors.collection_view(view)
    model = FeatureExtractorResponseModel.from_dict(collection)
    assert model is not None and model.required_vector_indexes[0].name == "vec"


@pytest.mark.parametrize(
    "manifest",
    [
        None,
        {},
        {"features": "not a list", "input_schema": [1], "parameter_schema": "x"},
        {"features": [None, 3, {"feature_type": "embedding"}, {"feature_type": "embedding",
                      "feature_name": "", "embedding_dim": 4}]},
        {"features": [{"feature_type": "embedding", "feature_name": "v", "embedding_dim": True}],
         "supported_input_types": "text", "icon": 5},
        {"features": [{"feature_type": "embedding", "feature_name": "v", "embedding_dim": -1}],
         "parameter_schema": {"properties": {"a": "not a dict"}}},
    ],
)
def test_hostile_manifests_still_give_valid_sdk_shapes(manifest: Any) -> None:
    plugin = Plugin(
        plugin_id="odd_1_0_0", name="odd", version="1.0.0", validation_status="passed",
        description="odd one", manifest=manifest,
    )
    view = extractors.unified_view(plugin, deployed=False)
    assert UnifiedExtractorResponse.from_dict(view) is not None
    assert FeatureExtractorResponseModel.from_dict(extractors.collection_view(view)) is not None
    for index in view["required_vector_indexes"]:
        assert index["index"]["dimensions"] is None  # a bool or negative size is dropped


def test_pick_by_id_then_by_name_prefers_deployed_then_newest() -> None:
    items = [
        {"feature_extractor_id": "a_1_0_0", "feature_extractor_name": "a", "deployed": True,
         "created_at": "2026-01-01T00:00:00Z"},
        {"feature_extractor_id": "a_2_0_0", "feature_extractor_name": "a", "deployed": False,
         "created_at": "2026-02-01T00:00:00Z"},
        {"feature_extractor_id": "a_3_0_0", "feature_extractor_name": "a", "deployed": False,
         "created_at": "2026-03-01T00:00:00Z"},
    ]
    assert extractors.pick(items, "a_2_0_0") is items[1]
    assert extractors.pick(items, "a") is items[0]
    assert extractors.pick(items[1:], "a") is items[2]
    assert extractors.pick(items, "b") is None


def test_find_extractor_names_the_namespace_when_missing(db: Database) -> None:
    add_plugin(db, NS_B, "not_here")
    with pytest.raises(NotFoundError, match="ns_a"):
        extractors.find_extractor(db, Serving(), NS_A, "not_here_1_0_0")


def test_collection_level_lists_each_extractor_once(db: Database) -> None:
    org = add_plugin(db, ORG_LEVEL, "shared_plugin")
    with db.session() as s:
        s.add_all([
            NamespacePlugin(namespace_id="ns_a", plugin_pk=org.id),
            NamespacePlugin(namespace_id="ns_b", plugin_pk=org.id),
        ])
    hooks = Serving()
    hooks.set_serving("ns_a", org)
    hooks.set_serving("ns_b", org)
    listed = extractors.collection_extractors(db, hooks, [NS_A, NS_B])
    assert ids(listed) == [org.plugin_id]
    assert "deployed" not in listed[0] and listed[0]["required_payload_indexes"] == []


def test_a_feature_extractor_is_found_only_while_deployed(db: Database) -> None:
    plugin = add_plugin(db, NS_A, "found_plugin")
    hooks = Serving()
    with pytest.raises(NotFoundError, match="found_plugin"):
        extractors.find_feature_extractor(db, hooks, [NS_A], "found_plugin")
    hooks.set_serving("ns_a", plugin)
    found = extractors.find_feature_extractor(db, hooks, [NS_A, NS_B], "found_plugin")
    assert found["feature_extractor_id"] == plugin.plugin_id
    assert FeatureExtractorResponseModel.from_dict(found) is not None
