"""Extractor discovery through the published SDK (mixpeek==0.81.1, unchanged) against a live
server: ``FeatureExtractorsApi``, ``NamespaceExtractorsApi`` and the reconfigure call of
``CustomPluginsNamespaceApi``, with a deployed plugin that declares an embedding feature."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from deploy_support import NS, deploy, upload, wait_for
from mixpeek import exceptions as sdk_errors
from mixpeek.api.custom_plugins_namespace_api import CustomPluginsNamespaceApi
from mixpeek.api.feature_extractors_api import FeatureExtractorsApi
from mixpeek.api.namespace_extractors_api import NamespaceExtractorsApi
from mixpeek.models.reconfigure_namespace_request import ReconfigureNamespaceRequest
from support import PIPELINE, LiveServer, sdk_client, unique_name, zip_bytes

REALTIME = """
class RealtimeHandler:
    async def predict(self, request):
        return {"embedding": [0.0] * 4}
"""

MANIFEST = """
feature_extractor_name = "{name}"
version = "1.0.0"
description = "four zeros"
features = [{{"type": "vector", "name": "zeros", "dimensions": 4, "distance": "Cosine"}}]
serve_config = {{"num_replicas": 1}}
"""


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def plugins(client: httpx.Client) -> dict[str, str]:
    """One deployed plugin with a vector feature and one uploaded, never deployed."""
    ids: dict[str, str] = {}
    for role in ("deployed", "idle"):
        name = unique_name(role[:4])
        files: dict[str, str | bytes] = {
            "manifest.py": MANIFEST.format(name=name),
            "pipeline.py": PIPELINE,
            "realtime.py": REALTIME,
        }
        ids[role] = upload(client, name, zip_bytes(files))
        ids[f"{role}_name"] = name
    deploy(client, ids["deployed"])
    body, _ = wait_for(client, ids["deployed"], {"deployed", "failed"})
    assert body["status"] == "deployed", body
    return ids


def test_feature_extractors_api_lists_the_deployed_plugins(
    server: LiveServer, plugins: dict[str, str]
) -> None:
    api = FeatureExtractorsApi(sdk_client(server))
    listed = api.list_feature_extractors()
    ids = {e.feature_extractor_id for e in listed}
    assert plugins["deployed"] in ids and plugins["idle"] not in ids
    one = api.get_feature_extractor_by(plugins["deployed"])
    assert one.feature_extractor_name == plugins["deployed_name"]
    assert one.source is not None and one.source.value == "custom"
    [index] = one.required_vector_indexes
    assert index.name == "zeros" and index.type == "single"
    assert index.feature_uri == f"mixpeek://{plugins['deployed_name']}@1.0.0/zeros"
    with pytest.raises(sdk_errors.NotFoundException):
        api.get_feature_extractor_by(plugins["idle"])


def test_namespace_extractors_api_filters_by_source(
    server: LiveServer, plugins: dict[str, str]
) -> None:
    api = NamespaceExtractorsApi(sdk_client(server))
    custom = api.list_extractors_namespaces(NS, source="custom")
    assert custom.namespace_id == NS and custom.builtin_count == 0
    deployed: dict[str, Any] = {e.feature_extractor_id: e for e in custom.extractors}
    assert deployed[plugins["deployed"]].deployed is True
    assert plugins["idle"] not in deployed
    everything = api.list_extractors_namespaces(NS, source="custom", include_disabled=True)
    idle = {e.feature_extractor_id: e for e in everything.extractors}[plugins["idle"]]
    assert idle.deployed is False and idle.plugin_id == plugins["idle"]
    assert api.list_extractors_namespaces(NS, source="builtin").extractors == []
    one = api.get_extractor_namespaces(NS, plugins["idle"])
    assert one.feature_uri == f"mixpeek://{plugins['idle_name']}@1.0.0"


def test_reconfigure_answers_the_sdks_shape_and_changes_nothing(
    server: LiveServer, client: httpx.Client, plugins: dict[str, str]
) -> None:
    api = CustomPluginsNamespaceApi(sdk_client(server))
    done = api.reconfigure_namespace_id_plugins(NS, ReconfigureNamespaceRequest(confirm=True))
    assert done.namespace_id == NS and done.status == "no_changes_needed"
    assert "zeros" in done.vectors_total and done.vectors_added == []
    assert done.collections_to_reprocess == [] and done.previous_points_count == 0
    still = client.get(f"/v1/namespaces/{NS}/plugins/{plugins['deployed']}/status").json()
    assert still["status"] == "deployed", still
