"""The published Mixpeek SDK (mixpeek==0.81.1), unchanged, against a live plughost server.

Every registry endpoint the SDK has is called through the SDK, and every raw response body is
checked against the SDK model's required fields.
"""

from __future__ import annotations

from typing import Any

import httpx
import mixpeek
import pytest
from mixpeek import models as M
from mixpeek.api.custom_plugins_namespace_api import CustomPluginsNamespaceApi
from mixpeek.api.plugins_api import PluginsApi
from support import LiveServer, plugin_files, sdk_client, tar_gz_bytes, unique_name, zip_bytes

NS = "ns_default"


def assert_model(model: Any, body: dict[str, Any]) -> Any:
    """Every required field of the SDK model is present, and the model accepts the body."""
    required = [f.alias or n for n, f in model.model_fields.items() if f.is_required()]
    missing = [f for f in required if f not in body]
    assert not missing, f"{model.__name__} misses required fields {missing} in {body}"
    parsed = model.from_dict(body)
    assert parsed is not None
    return parsed


@pytest.fixture(scope="module")
def ns_api(server: LiveServer) -> CustomPluginsNamespaceApi:
    return CustomPluginsNamespaceApi(sdk_client(server))


@pytest.fixture(scope="module")
def org_api(server: LiveServer) -> PluginsApi:
    return PluginsApi(sdk_client(server))


def presigned_upload(api: Any, gen: Any, confirm: Any, *scope: str, name: str, archive: bytes) -> Any:
    req_model = (M.ApiNamespacesPluginsModelsCreatePluginUploadRequest if scope
                 else M.ApiPluginsModelsCreatePluginUploadRequest)
    up = gen(*scope, req_model(name=name, version="1.0.0", description="d", file_size_bytes=len(archive)))
    put = httpx.put(up.presigned_url, content=archive, headers={"Content-Type": "application/zip"})
    assert put.status_code == 200, put.text
    etag = put.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    return up, confirm(*scope, up.upload_id, confirm_plugin_upload_request=M.ConfirmPluginUploadRequest(
        etag=etag, file_size_bytes=len(archive)))


def test_presigned_upload_confirm_get_list_delete(ns_api: CustomPluginsNamespaceApi, server: LiveServer) -> None:
    name = unique_name("sdk")
    up, res = presigned_upload(
        ns_api, ns_api.generate_upload_url_namespaces_id_plugins,
        ns_api.confirm_upload_namespaces_id_plugins, NS, name=name,
        archive=zip_bytes(plugin_files(name)),
    )
    assert up.namespace_id == NS and up.version == "1.0.0" and up.s3_key
    assert isinstance(res, M.ConfirmPluginUploadResponse)
    assert res.success is True and res.validation_status == "passed", res
    assert res.plugin_id == f"{name}_1_0_0"
    assert res.feature_uri == f"mixpeek://{name}@1.0.0"
    assert res.s3_archive_url

    listing = ns_api.list_plugins_namespaces(NS)
    assert any(p.plugin_id == res.plugin_id and p.deployed is False for p in listing.plugins)
    assert listing.total == len(listing.plugins)

    detail = ns_api.get_plugin_namespaces(NS, res.plugin_id, return_presigned_urls=True)
    doc = detail.plugin
    assert doc.name == name and doc.version == "1.0.0" and len(doc.code_hash) == 64
    assert doc.security_scan_passed is True and doc.validation_status == "passed"
    assert detail.presigned_download_url
    download = httpx.get(detail.presigned_download_url)
    assert download.status_code == 200
    assert download.content == zip_bytes(plugin_files(name)) or len(download.content) > 0

    deleted = ns_api.delete_plugin_namespaces(NS, res.plugin_id)
    assert deleted.plugin_id == res.plugin_id and deleted.deployment_removed is False
    with pytest.raises(mixpeek.exceptions.NotFoundException):
        ns_api.get_plugin_namespaces(NS, res.plugin_id)


def test_multipart_upload_tar_gz_metadata_style(ns_api: CustomPluginsNamespaceApi) -> None:
    name = unique_name("mp")
    archive = tar_gz_bytes(plugin_files(name, style="metadata"), folder=f"{name}/")
    res = ns_api.upload_plugin_namespaces(NS, file=archive, name=name, version="1.0.0", description="tgz")
    assert isinstance(res, M.PluginUploadResponse)
    assert res.success and res.validation_status == "passed", res
    doc = ns_api.get_plugin_namespaces(NS, res.plugin_id).plugin
    assert doc.description == "tgz"
    manifest = doc.manifest
    assert manifest is not None and manifest.feature_extractor_name == name
    assert manifest.input_schema and manifest.input_schema["properties"]["text"]["type"] == "string"


def test_org_level_twins_and_namespace_membership(org_api: PluginsApi, ns_api: CustomPluginsNamespaceApi) -> None:
    name = unique_name("org")
    up, res = presigned_upload(
        org_api, org_api.generate_upload_url_plugins, org_api.confirm_upload_plugins,
        name=name, archive=zip_bytes(plugin_files(name)),
    )
    assert up.organization_id == "org_default"
    assert res.success, res
    assert any(p.plugin_id == res.plugin_id for p in org_api.list_plugins().plugins)
    assert org_api.get_plugin(res.plugin_id).plugin.organization_id == "org_default"

    avail = ns_api.list_available_org_plugins_namespaces(NS)
    item = next(p for p in avail.plugins if p.plugin_id == res.plugin_id)
    assert item.enabled_in_namespace is False
    enabled = ns_api.enable_org_plugin_namespaces(
        NS, res.plugin_id, enable_org_plugin_request=M.EnableOrgPluginRequest(deploy=False))
    assert enabled.success and enabled.namespace_id == NS and enabled.feature_uri.endswith("@1.0.0")
    avail = ns_api.list_available_org_plugins_namespaces(NS)
    assert next(p for p in avail.plugins if p.plugin_id == res.plugin_id).enabled_in_namespace is True
    disabled = ns_api.disable_org_plugin_namespaces(NS, res.plugin_id)
    assert disabled.success and disabled.plugin_id == res.plugin_id
    avail = ns_api.list_available_org_plugins_namespaces(NS)
    assert next(p for p in avail.plugins if p.plugin_id == res.plugin_id).enabled_in_namespace is False
    assert org_api.delete_plugin(res.plugin_id).plugin_id == res.plugin_id
    assert all(p.plugin_id != res.plugin_id for p in org_api.list_plugins().plugins)


def test_every_response_has_the_sdk_models_required_fields(server: LiveServer) -> None:
    name = unique_name("raw")
    archive = zip_bytes(plugin_files(name))
    with server.client() as c:
        up = c.post(f"/v1/namespaces/{NS}/plugins/uploads", json={"name": name, "version": "1.0.0"})
        assert up.status_code == 200, up.text
        assert_model(M.ApiNamespacesPluginsModelsPluginPresignedURLResponse, up.json())
        assert httpx.put(up.json()["presigned_url"], content=archive).status_code == 200
        conf = c.post(f"/v1/namespaces/{NS}/plugins/uploads/{up.json()['upload_id']}/confirm", json={})
        assert_model(M.ConfirmPluginUploadResponse, conf.json())
        pid = conf.json()["plugin_id"]
        assert_model(M.ApiNamespacesPluginsModelsPluginListResponse, c.get(f"/v1/namespaces/{NS}/plugins").json())
        for item in c.get(f"/v1/namespaces/{NS}/plugins").json()["plugins"]:
            assert_model(M.PluginListItem, item)
        detail = c.get(f"/v1/namespaces/{NS}/plugins/{pid}").json()
        assert_model(M.ApiNamespacesPluginsModelsPluginDetailResponse, detail)
        assert_model(M.ApiNamespacesPluginsModelsPluginDocument, detail["plugin"])
        assert_model(M.ApiNamespacesPluginsModelsPluginManifestMetadata, detail["plugin"]["manifest"])

        name2 = unique_name("raw")
        mp = c.post(f"/v1/namespaces/{NS}/plugins", data={"name": name2, "version": "1"},
                    files={"file": ("p.zip", zip_bytes(plugin_files(name2)), "application/zip")})
        assert_model(M.PluginUploadResponse, mp.json())
        assert mp.json()["plugin_id"] == f"{name2}_1_0_0"

        org_name = unique_name("rawo")
        oup = c.post("/v1/plugins/uploads", json={"name": org_name, "version": "2.1.0"})
        assert_model(M.ApiPluginsModelsPluginPresignedURLResponse, oup.json())
        httpx.put(oup.json()["presigned_url"], content=zip_bytes(plugin_files(org_name)))
        oconf = c.post(f"/v1/plugins/uploads/{oup.json()['upload_id']}/confirm")
        assert_model(M.ConfirmPluginUploadResponse, oconf.json())
        opid = oconf.json()["plugin_id"]
        assert_model(M.ApiPluginsModelsPluginListResponse, c.get("/v1/plugins").json())
        odetail = c.get(f"/v1/plugins/{opid}").json()
        assert_model(M.ApiPluginsModelsPluginDetailResponse, odetail)
        assert_model(M.ApiPluginsModelsPluginDocument, odetail["plugin"])
        assert_model(M.ApiPluginsModelsPluginManifestMetadata, odetail["plugin"]["manifest"])
        avail = c.get(f"/v1/namespaces/{NS}/plugins/available").json()
        assert_model(M.AvailableOrgPluginsResponse, avail)
        for item in avail["plugins"]:
            assert_model(M.AvailableOrgPluginItem, item)
        assert_model(M.EnableOrgPluginResponse, c.post(f"/v1/namespaces/{NS}/plugins/org/{opid}/enable", json={"deploy": False}).json())
        assert_model(M.DisableOrgPluginResponse, c.post(f"/v1/namespaces/{NS}/plugins/org/{opid}/disable").json())
        assert_model(M.ApiPluginsModelsPluginDeleteResponse, c.delete(f"/v1/plugins/{opid}").json())
        assert_model(M.ApiNamespacesPluginsModelsPluginDeleteResponse, c.delete(f"/v1/namespaces/{NS}/plugins/{pid}").json())
        err = c.get(f"/v1/namespaces/{NS}/plugins/{pid}")
        assert err.status_code == 404
        assert_model(M.ErrorResponse, err.json())
        assert_model(M.ErrorDetail, err.json()["error"])
