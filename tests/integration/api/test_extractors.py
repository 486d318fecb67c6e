"""plughost.api.routes_extractors: the plugins listed as Mixpeek extractors (namespace and
collection level), one extractor by id or name, and the namespace reconfigure no-op. Each
answer is read back through the SDK's own models, as its generated client would."""

from __future__ import annotations

from typing import Any

import httpx
from inproc import InProcessServer
from mixpeek.models.feature_extractor_response_model import FeatureExtractorResponseModel
from mixpeek.models.reconfigure_namespace_response import ReconfigureNamespaceResponse
from mixpeek.models.unified_extractor_list_response import UnifiedExtractorListResponse
from mixpeek.models.unified_extractor_response import UnifiedExtractorResponse
from support import PIPELINE, unique_name, zip_bytes

from .conftest import Deployed, Tenant
from .helpers import ECHO_REALTIME, NS, archive, error, runtime, upload, wait_status

EXTRACTORS = f"/v1/namespaces/{NS}/extractors"
FEATURES = "/v1/collections/features/extractors"

MANIFEST_WITH_FEATURES = """
feature_extractor_name = "{name}"
version = "1.0.0"
description = "embeds text"
features = [
    {{"feature_type": "embedding", "feature_name": "text_vec", "embedding_dim": 8,
      "distance_metric": "dot"}},
]
input_schema = {{"type": "object", "properties": {{"text": {{"type": "string"}}}}}}
parameter_schema = {{"type": "object", "properties": {{"scale": {{"type": "number",
    "default": 2.0}}, "mode": {{"type": "string"}}}}}}
supported_input_types = ["text"]
"""


def with_features(c: httpx.Client, ns: str = NS) -> tuple[str, str]:
    """An undeployed plugin whose manifest declares one embedding feature: (name, id)."""
    name = unique_name("vec")
    files = {
        "manifest.py": MANIFEST_WITH_FEATURES.format(name=name),
        "pipeline.py": PIPELINE,
        "realtime.py": ECHO_REALTIME,
    }
    resp = c.post(
        f"/v1/namespaces/{ns}/plugins",
        data={"name": name, "version": "1.0.0"},
        files={"file": ("p.zip", zip_bytes(files), "application/zip")},
    )
    assert resp.status_code == 200 and resp.json()["validation_status"] == "passed", resp.text
    return name, f"{name}_1_0_0"


def by_id(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["feature_extractor_id"]: e for e in listing["extractors"]}


def test_custom_source_lists_the_deployed_plugins_in_the_sdks_shape(
    app: InProcessServer, deployed: Deployed
) -> None:
    with app.client() as c:
        resp = c.get(EXTRACTORS, params={"source": "custom"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    parsed = UnifiedExtractorListResponse.from_dict(body)
    assert parsed is not None and parsed.namespace_id == NS
    assert body["builtin_count"] == 0 and body["total"] == body["custom_count"] == len(
        body["extractors"]
    )
    echo = by_id(body)[deployed.plugin_id]
    assert echo["feature_extractor_name"] == deployed.name and echo["version"] == "1.0.0"
    assert echo["source"] == "custom" and echo["deployed"] is True
    assert echo["plugin_id"] == deployed.plugin_id
    assert echo["feature_uri"] == f"mixpeek://{deployed.name}@1.0.0"
    assert echo["validation_status"] == "passed" and echo["created_at"]
    assert all(e["deployed"] for e in body["extractors"]), body


def test_undeployed_plugins_appear_only_with_include_disabled(app: InProcessServer) -> None:
    with app.client() as c:
        _, pid = with_features(c)
        hidden = c.get(EXTRACTORS, params={"source": "custom"}).json()
        shown = c.get(EXTRACTORS, params={"source": "custom", "include_disabled": "true"}).json()
    assert pid not in by_id(hidden)
    assert by_id(shown)[pid]["deployed"] is False
    UnifiedExtractorListResponse.from_dict(shown)


def test_manifest_features_become_vector_indexes_and_defaults(app: InProcessServer) -> None:
    with app.client() as c:
        name, pid = with_features(c)
        resp = c.get(f"{EXTRACTORS}/{pid}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    model = UnifiedExtractorResponse.from_dict(body)
    assert model is not None and model.required_vector_indexes is not None
    [index] = body["required_vector_indexes"]
    assert index["name"] == "text_vec" and index["type"] == "single"
    assert index["feature_uri"] == f"mixpeek://{name}@1.0.0/text_vec"
    assert index["index"]["dimensions"] == 8 and index["index"]["distance"] == "dot"
    assert index["index"]["type"] == "dense"
    assert body["default_parameters"] == {"scale": 2.0}
    assert body["supported_input_types"] == ["text"]
    assert body["input_schema"]["properties"] == {"text": {"type": "string"}}
    assert body["description"] == "embeds text"


def test_builtin_source_lists_nothing(app: InProcessServer, deployed: Deployed) -> None:
    with app.client() as c:
        body = c.get(EXTRACTORS, params={"source": "builtin"}).json()
    assert body["extractors"] == [] and body["total"] == 0 and body["custom_count"] == 0


def test_an_unknown_source_is_refused(app: InProcessServer) -> None:
    with app.client() as c:
        error(c.get(EXTRACTORS, params={"source": "everything"}), 422, "ValidationError")


def test_an_enabled_organization_plugin_is_an_extractor_of_the_namespace(
    app: InProcessServer,
) -> None:
    name = unique_name()
    with app.client() as c:
        up = c.post("/v1/plugins/uploads", json={"name": name, "version": "1"}).json()
        app.anonymous().put(up["presigned_url"], content=archive(name))
        done = c.post(f"/v1/plugins/uploads/{up['upload_id']}/confirm").json()
        pid = done["plugin_id"]
        before = c.get(EXTRACTORS, params={"include_disabled": "true"}).json()
        enabled = c.post(f"/v1/namespaces/{NS}/plugins/org/{pid}/enable", json={"deploy": False})
        assert enabled.status_code == 200, enabled.text
        after = c.get(EXTRACTORS, params={"include_disabled": "true"}).json()
    assert pid not in by_id(before)
    assert by_id(after)[pid]["deployed"] is False


def test_other_organizations_and_anonymous_callers_see_nothing(
    app: InProcessServer, outsider: Tenant
) -> None:
    with app.client(outsider.key) as c:
        error(c.get(EXTRACTORS), 404, "NotFoundError")
        error(c.get(FEATURES, headers={"X-Namespace": NS}), 404, "NotFoundError")
        error(
            c.post(f"/v1/namespaces/{NS}/plugins/reconfigure", json={"confirm": True}),
            404,
            "NotFoundError",
        )
    with app.anonymous() as c:
        error(c.get(EXTRACTORS), 401, "AuthenticationError")
        error(c.get(FEATURES), 401, "AuthenticationError")


def test_collection_level_list_is_the_sdks_list(app: InProcessServer, deployed: Deployed) -> None:
    with app.client() as c:
        everything = c.get(FEATURES)
        one_ns = c.get(FEATURES, headers={"X-Namespace": NS})
    for resp in (everything, one_ns):
        assert resp.status_code == 200, resp.text
        items = resp.json()
        assert isinstance(items, list)
        models = [FeatureExtractorResponseModel.from_dict(item) for item in items]
        assert deployed.plugin_id in {m.feature_extractor_id for m in models if m}
        ids = [item["feature_extractor_id"] for item in items]
        assert len(ids) == len(set(ids))


def test_a_key_limited_to_a_namespace_lists_only_that_namespace(
    app: InProcessServer, deployed: Deployed, limited: Tenant
) -> None:
    with app.client(limited.key) as c:
        items = c.get(FEATURES).json()
        error(c.get(FEATURES, headers={"X-Namespace": NS}), 404, "NotFoundError")
    assert deployed.plugin_id not in {item["feature_extractor_id"] for item in items}


def test_one_feature_extractor_by_id_or_by_name(app: InProcessServer, deployed: Deployed) -> None:
    with app.client() as c:
        by_plugin_id = c.get(f"{FEATURES}/{deployed.plugin_id}")
        by_name = c.get(f"{FEATURES}/{deployed.name}")
        missing = c.get(f"{FEATURES}/{unique_name('none')}")
        ns_missing = c.get(f"{EXTRACTORS}/{unique_name('none')}")
    for resp in (by_plugin_id, by_name):
        assert resp.status_code == 200, resp.text
        model = FeatureExtractorResponseModel.from_dict(resp.json())
        assert model is not None and model.feature_extractor_id == deployed.plugin_id
    error(missing, 404, "NotFoundError")
    error(ns_missing, 404, "NotFoundError")


def test_reconfigure_is_a_no_op_in_the_sdks_shape(
    app: InProcessServer, deployed: Deployed
) -> None:
    path = f"/v1/namespaces/{NS}/plugins/reconfigure"
    with app.client() as c:
        resp = c.post(path, json={"confirm": True})
        refused = c.post(path, json={"confirm": False})
        no_body = c.post(path)
        still = c.get(EXTRACTORS).json()
    assert resp.status_code == 200, resp.text
    body = resp.json()
    parsed = ReconfigureNamespaceResponse.from_dict(body)
    assert parsed is not None and parsed.namespace_id == NS
    assert body["status"] == "no_changes_needed" and body["previous_points_count"] == 0
    assert body["vectors_added"] == [] and body["collections_to_reprocess"] == []
    assert "changes nothing" in body["message"]
    assert "confirm" in error(refused, 422, "ValidationError")["message"]
    error(no_body, 422, "ValidationError")
    assert deployed.plugin_id in by_id(still)  # the deployment is untouched


def test_reconfigure_lists_the_deployed_vector_indexes(app: InProcessServer) -> None:
    ns = runtime_namespace(app)
    path = f"/v1/namespaces/{ns}/plugins/reconfigure"
    with app.client() as c:
        _, pid = with_features(c, ns)
        before = c.post(path, json={"confirm": True}).json()
        assert c.post(f"/v1/namespaces/{ns}/plugins/{pid}/deploy").status_code == 200
        assert wait_status(c, pid, {"deployed", "failed"}, ns=ns)["status"] == "deployed"
        after = c.post(path, json={"confirm": True}).json()
    assert before["vectors_total"] == [], before  # not deployed: not the namespace's
    assert after["vectors_total"] == ["text_vec"], after
    assert after["status"] == "no_changes_needed" and after["vectors_added"] == []


def runtime_namespace(app: InProcessServer) -> str:
    """A fresh namespace of the default organization."""
    accounts = runtime(app).accounts
    return str(accounts.create_namespace("ext", namespace_id=unique_name("ns"))["namespace_id"])


def test_upload_helper_plugins_without_features_have_no_vector_indexes(
    app: InProcessServer,
) -> None:
    with app.client() as c:
        pid = upload(c, unique_name())
        body = c.get(f"{EXTRACTORS}/{pid}").json()
    assert body["required_vector_indexes"] == [] and body["deployed"] is False
