"""Namespace models through the published SDK's ``CustomModelsApi`` (mixpeek==0.81.1,
unchanged) against a live server, on SQLite and PostgreSQL and with archives on S3 (moto):
every route, answers its strict models accept, dedupe by content, the 409 of a model a
deployed plugin names, the size limit, and the files laid out again after a restart."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from deploy_support import NS, deploy, upload, wait_for
from mixpeek import exceptions as sdk_errors
from mixpeek.api.custom_models_api import CustomModelsApi
from mixpeek.models.available_org_models_response import AvailableOrgModelsResponse
from mixpeek.models.enable_org_model_request import EnableOrgModelRequest
from mixpeek.models.model_deploy_response import ModelDeployResponse
from mixpeek.models.model_detail_response import ModelDetailResponse
from mixpeek.models.model_list_response import ModelListResponse
from mixpeek.models.model_resource_requirements import ModelResourceRequirements
from mixpeek.models.model_upload_response import ModelUploadResponse
from model_support import GOOD, model_tar, safetensors_bytes, torch_bytes
from s3support import MotoServer, object_keys, s3_client, s3_env
from support import (
    PIPELINE,
    LiveServer,
    create_pg_database,
    drop_pg_database,
    sdk_client,
    tar_gz_bytes,
    unique_name,
)

LIMIT = 400_000  # PLUGHOST_MODEL_MAX_BYTES of the module's servers
BUCKET = "plughost-models"
ENV = {"PLUGHOST_MODEL_MAX_BYTES": str(LIMIT)}


@pytest.fixture(scope="session")
def db_kind(both_databases: str) -> str:
    """The SDK's models routes on both databases (tests/e2e/conftest.py runs SQLite alone)."""
    return both_databases


@pytest.fixture(scope="module")
def server(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The module's server per database kind (overrides conftest's), with a small model limit."""
    url = create_pg_database() if db_kind == "postgres" else ""
    srv = LiveServer(home=tmp_path_factory.mktemp(f"models-{db_kind}"), database_url=url,
                     extra_env=dict(ENV))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        if url:
            drop_pg_database(url)


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    srv = MotoServer(tmp_path_factory.mktemp("moto")).start()
    try:
        s3_client(srv.url).create_bucket(Bucket=BUCKET)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def s3_server(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {**s3_env(moto.url, BUCKET), **ENV}
    srv = LiveServer(home=tmp_path_factory.mktemp("models-s3"), extra_env=env).start()
    try:
        yield srv
    finally:
        srv.stop()


def api_of(server: LiveServer, key: str | None = None) -> CustomModelsApi:
    return CustomModelsApi(sdk_client(server, key))


def sdk_upload(
    api: CustomModelsApi, name: str, data: bytes, fmt: str = "safetensors", ns: str = NS,
    version: str = "1.0.0", **extra: Any,
) -> ModelUploadResponse:
    return api.upload_model_namespaces(
        namespace_id=ns, file=("model.tar.gz", data), name=name, version=version,
        model_format=fmt, **extra,
    )


def new_namespace(server: LiveServer) -> str:
    done = server.cli("namespaces", "create", "second", "--id", unique_name("ns"), "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["namespace_id"])


@pytest.mark.parametrize("fmt", ["safetensors", "onnx", "pytorch", "huggingface"])
def test_every_route_through_the_sdk(server: LiveServer, fmt: str) -> None:
    # (floats cannot be sent: the SDK's multipart encoder takes int and str form values only)
    api = api_of(server)
    files = GOOD.get(fmt) or {"weights.pt": torch_bytes()}
    name = unique_name("m")
    up = sdk_upload(api, name, model_tar(files, f"{name}/"), fmt, framework="torch",
                    task_type="embedding", num_cpus=2, num_gpus=0, memory_gb=1)
    assert isinstance(up, ModelUploadResponse) and up.success
    model_id = f"{name}_1_0_0"
    assert up.model_id == model_id and up.deployment_status == "not_deployed"
    listed = api.list_models_namespaces(NS)
    assert isinstance(listed, ModelListResponse) and listed.namespace_id == NS
    item = next(m for m in listed.models if m.model_id == model_id)
    assert item.model_format == fmt and item.deployed is False and item.created_at is not None
    detail = api.get_model_namespaces(NS, model_id)
    assert isinstance(detail, ModelDetailResponse)
    doc = detail.model
    assert doc.model_format == fmt and len(doc.model_hash) == 64
    assert doc.model_archive_url == up.model_archive_url
    assert doc.resource_requirements is not None
    assert doc.resource_requirements.num_cpus == 2
    assert doc.resource_requirements.memory == 1024**3
    deployed = api.deploy_model_namespaces(NS, model_id)
    assert isinstance(deployed, ModelDeployResponse) and deployed.deployment_status == "deployed"
    assert api.get_model_namespaces(NS, model_id).model.deployed is True
    # what plugins of the namespace see: the index and the files, hard links of one blob
    folder = server.home / "models" / "ns" / NS
    index = json.loads((folder / "index.json").read_text())["models"]
    assert index[model_id]["model_format"] == fmt and index[model_id]["path"] == model_id
    assert sorted(p.name for p in (folder / model_id).iterdir()) == sorted(files)
    deleted = api.delete_model_namespaces(NS, model_id)
    assert deleted.model_id == model_id
    with pytest.raises(sdk_errors.NotFoundException):
        api.get_model_namespaces(NS, model_id)
    assert not (folder / model_id).exists()


def test_errors_through_the_sdk(server: LiveServer) -> None:
    api = api_of(server)
    name = unique_name("e")
    sdk_upload(api, name, model_tar(GOOD["safetensors"]))
    with pytest.raises(sdk_errors.ConflictException):
        sdk_upload(api, name, model_tar(GOOD["safetensors"]))
    with pytest.raises(sdk_errors.UnprocessableEntityException) as caught:
        sdk_upload(api, unique_name("e"), model_tar({"model.onnx": b"nope"}), "onnx")
    assert "model.onnx" in str(caught.value.body)
    with pytest.raises(sdk_errors.NotFoundException):
        api.get_model_namespaces(NS, "missing_1_0_0")
    with pytest.raises(sdk_errors.NotFoundException):
        api.list_models_namespaces("ns_nobody")
    with pytest.raises(sdk_errors.UnauthorizedException):
        api_of(server, "ph_not_a_key").list_models_namespaces(NS)
    # the limit: an incompressible archive past it is refused while it streams (413)
    big = model_tar({"model.safetensors": os.urandom(LIMIT + 10_000)})
    with pytest.raises(sdk_errors.ApiException) as too_big:
        sdk_upload(api, unique_name("big"), big)
    assert too_big.value.status == 413
    # and a small archive unpacking past it is refused at intake (422)
    zeros = model_tar({"model.safetensors": safetensors_bytes({"w": [0.0] * (LIMIT // 4)})})
    assert len(zeros) < LIMIT
    with pytest.raises(sdk_errors.UnprocessableEntityException):
        sdk_upload(api, unique_name("bomb"), zeros)


def test_dedupe_and_org_models(server: LiveServer) -> None:
    api = api_of(server)
    data = model_tar({"model.safetensors": safetensors_bytes({"w": [float(i) for i in range(64)]})})
    name = unique_name("org")
    first = sdk_upload(api, name, data)
    second = sdk_upload(api, name, data, version="1.1.0")
    assert first.model_archive_url == second.model_archive_url  # one stored archive
    other = new_namespace(server)
    available = api.list_available_org_models_namespaces(other)
    assert isinstance(available, AvailableOrgModelsResponse)
    item = next(m for m in available.models if m.model_id == first.model_id)
    assert item.enabled_in_namespace is False
    enabled = api.enable_org_model_namespaces(
        other, first.model_id,
        enable_org_model_request=EnableOrgModelRequest(
            deploy=True, resource_overrides=ModelResourceRequirements(num_cpus=1, num_gpus=1)
        ),
    )
    assert enabled.success and enabled.deployment_status == "deployed"
    doc = api.get_model_namespaces(other, first.model_id).model
    assert doc.model_hash == api.get_model_namespaces(NS, first.model_id).model.model_hash
    assert doc.resource_requirements is not None and doc.resource_requirements.num_gpus == 1
    ours = server.home / "models" / "ns" / NS / first.model_id / "model.safetensors"
    theirs = server.home / "models" / "ns" / other / first.model_id / "model.safetensors"
    assert ours.stat().st_ino == theirs.stat().st_ino  # one copy on disk and in the page cache
    with pytest.raises(sdk_errors.ConflictException):
        api.disable_org_model_namespaces(NS, first.model_id)  # uploaded there: DELETE it
    disabled = api.disable_org_model_namespaces(other, first.model_id)
    assert disabled.success and disabled.namespace_id == other
    assert not theirs.exists() and ours.is_file()
    after = api.list_available_org_models_namespaces(other).models
    assert next(m for m in after if m.model_id == first.model_id).enabled_in_namespace is False


REALTIME = '''
class RealtimeHandler:
    async def predict(self, request):
        return {{"ok": True}}


def weights():
    from shared.models.loader import load_namespace_model
    return load_namespace_model("{model_id}")
'''

MANIFEST = '''
feature_extractor_name = "{name}"
version = "1.0.0"
description = "names a namespace model"
features = []
'''


def test_a_model_a_deployed_plugin_names_is_kept(server: LiveServer) -> None:
    api = api_of(server)
    name = unique_name("kept")
    model_id = sdk_upload(api, name, model_tar(GOOD["safetensors"])).model_id
    plugin = unique_name("user")
    files: dict[str, str | bytes] = {
        "manifest.py": MANIFEST.format(name=plugin),
        "pipeline.py": PIPELINE,
        "realtime.py": REALTIME.format(model_id=model_id),
    }
    with server.client() as c:
        pid = upload(c, plugin, tar_gz_bytes(files, folder=f"{plugin}/"))
        deploy(c, pid)
        body, _ = wait_for(c, pid, {"deployed", "failed"}, timeout=180)
        assert body["status"] == "deployed", body
        with pytest.raises(sdk_errors.ConflictException) as caught:
            api.delete_model_namespaces(NS, model_id)
        assert pid in str(caught.value.body)
        assert c.post(f"/v1/namespaces/{NS}/plugins/{pid}/undeploy").status_code == 200
        wait_for(c, pid, {"not_deployed"}, timeout=60)
    assert api.delete_model_namespaces(NS, model_id).success


def test_on_s3_one_object_per_content_and_files_restored_after_restart(
    s3_server: LiveServer, moto: MotoServer
) -> None:
    api = api_of(s3_server)
    s3 = s3_client(moto.url)
    data = model_tar(GOOD["huggingface"], "hf/")
    name = unique_name("s3")
    first = sdk_upload(api, name, data, "huggingface")
    sdk_upload(api, name, data, "huggingface", version="2.0.0")
    assert first.model_archive_url.startswith(f"s3://{BUCKET}/")
    model_keys = [k for k in object_keys(s3, BUCKET) if "/models/" in k or k.startswith("models/")]
    assert len(model_keys) == 1, model_keys
    # this machine's files lost (a new machine, a wiped cache): the next start fetches them
    s3_server.stop()
    shutil.rmtree(s3_server.home / "models")
    shutil.rmtree(s3_server.home / "archive-cache", ignore_errors=True)
    s3_server.start()
    folder = s3_server.home / "models" / "ns" / NS
    index = json.loads((folder / "index.json").read_text())["models"]
    assert {first.model_id, f"{name}_2_0_0"} <= set(index)
    assert json.loads((folder / first.model_id / "config.json").read_text())["model_type"] == "bert"
    api = api_of(s3_server)
    api.delete_model_namespaces(NS, first.model_id)
    assert len([k for k in object_keys(s3, BUCKET) if "models/" in k]) == 1  # still used
    api.delete_model_namespaces(NS, f"{name}_2_0_0")
    assert [k for k in object_keys(s3, BUCKET) if "models/" in k] == []
