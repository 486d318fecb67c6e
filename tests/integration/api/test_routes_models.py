"""Namespace models over HTTP (the app in process, SQLite): the routes of the SDK's
CustomModelsApi, their error bodies, keys limited to a namespace and other organizations,
the model limit, and the 409 of a model a deployed plugin names."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from inproc import InProcessServer
from model_support import GOOD, model_tar, safetensors_bytes, torch_bytes
from support import PIPELINE, unique_name, zip_bytes

from .helpers import ECHO_REALTIME, error, runtime, wait_status

NS = "ns_default"
LIMIT = 300_000


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    overrides = {"model_max_bytes": LIMIT, "multipart_overhead_bytes": 16_384}
    srv = InProcessServer(home=tmp_path_factory.mktemp("models"), overrides=overrides).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(app: InProcessServer) -> Iterator[httpx.Client]:
    with app.client() as c:
        yield c


def post_model(
    c: httpx.Client, name: str, data: bytes, fmt: str = "safetensors", ns: str = NS,
    version: str = "1.0.0", **extra: str,
) -> httpx.Response:
    return c.post(
        f"/v1/namespaces/{ns}/models",
        data={"name": name, "version": version, "model_format": fmt, **extra},
        files={"file": ("model.tar.gz", data, "application/gzip")},
    )


def ok(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.mark.parametrize("fmt", [*sorted(GOOD), "pytorch"])
def test_each_format_uploads_lists_gets_and_deletes(client: httpx.Client, fmt: str) -> None:
    files = GOOD.get(fmt) or {"weights.pt": torch_bytes()}
    name = unique_name("m")
    body = ok(post_model(client, name, model_tar(files, "top/"), fmt, framework="torch",
                         task_type="embedding", num_cpus="0.5", num_gpus="0", memory_gb="1.5"))
    model_id = f"{name}_1_0_0"
    assert body == {
        "success": True, "model_id": model_id, "deployment_status": "not_deployed",
        "endpoint": f"/v1/namespaces/{NS}/models/{model_id}",
        "model_archive_url": body["model_archive_url"],
    }
    assert body["model_archive_url"].startswith("file://")
    listed = ok(client.get(f"/v1/namespaces/{NS}/models"))
    assert model_id in [m["model_id"] for m in listed["models"]]
    doc = ok(client.get(f"/v1/namespaces/{NS}/models/{model_id}"))["model"]
    assert doc["model_format"] == fmt and len(doc["model_hash"]) == 64
    assert doc["resource_requirements"] == {"num_cpus": 0.5, "num_gpus": 0, "memory": 1610612736}
    assert doc["framework"] == "torch" and doc["task_type"] == "embedding"
    deleted = ok(client.delete(f"/v1/namespaces/{NS}/models/{model_id}"))
    assert deleted["model_id"] == model_id
    error(client.get(f"/v1/namespaces/{NS}/models/{model_id}"), 404, "NotFoundError")


def test_a_format_mismatch_is_422_naming_the_file(client: httpx.Client) -> None:
    name = unique_name("bad")
    resp = post_model(client, name, model_tar({"model.safetensors": b"\x05" * 20}))
    err = error(resp, 422, "ValidationError")
    assert "model.safetensors" in err["message"] and "safetensors file expected" in err["message"]
    assert err["details"]["errors"][0].startswith("model.safetensors: ")
    resp = post_model(client, name, model_tar({"model.onnx": b"not protobuf"}), "onnx")
    assert "model.onnx" in error(resp, 422, "ValidationError")["message"]
    resp = post_model(client, name, model_tar({"weights.pt": b"\x80\x04K\x01."}), "pytorch")
    assert "weights.pt" in error(resp, 422, "ValidationError")["message"]
    resp = post_model(client, name, model_tar({"README": "x"}), "huggingface")
    assert "config.json" in error(resp, 422, "ValidationError")["message"]
    assert all(m["name"] != name for m in ok(client.get(f"/v1/namespaces/{NS}/models"))["models"])


def test_form_errors(client: httpx.Client) -> None:
    data = model_tar(GOOD["safetensors"])
    error(post_model(client, unique_name("f"), data, "tensorflow"), 422, "ValidationError")
    error(post_model(client, "9bad", data), 422, "ValidationError")
    error(post_model(client, unique_name("f"), data, version="../x"), 422, "ValidationError")
    error(post_model(client, unique_name("f"), data, num_gpus="many"), 422, "ValidationError")
    error(post_model(client, unique_name("f"), data, num_cpus="100"), 422, "ValidationError")
    error(post_model(client, unique_name("f"), data, color="red"), 422, "ValidationError")
    resp = client.post(f"/v1/namespaces/{NS}/models", data={"name": "abc"})
    assert resp.status_code in (400, 422), resp.text
    resp = client.post(f"/v1/namespaces/{NS}/models", json={"name": "abc"})
    error(resp, 400, "BadRequestError")


def test_duplicates_conflict_and_content_is_stored_once(
    app: InProcessServer, client: httpx.Client
) -> None:
    data = model_tar({"model.safetensors": safetensors_bytes({"w": [7.0, 8.0]})})
    name = unique_name("dup")
    first = ok(post_model(client, name, data))
    error(post_model(client, name, data), 409, "ConflictError")
    second = ok(post_model(client, name, data, version="2.0.0"))
    assert first["model_archive_url"] == second["model_archive_url"]
    key = first["model_archive_url"].split("/archives/", 1)[1]
    assert (app.home / "archives" / key).is_file()
    store_dir = app.home / "archives" / "models"
    assert sum(1 for p in store_dir.iterdir() if p.name == Path(key).name) == 1
    models_dir = app.home / "models"
    a = models_dir / "ns" / NS / f"{name}_1_0_0"
    b = models_dir / "ns" / NS / f"{name}_2_0_0"
    assert (a / "model.safetensors").stat().st_ino == (b / "model.safetensors").stat().st_ino


def test_the_model_limit_is_413_or_422(client: httpx.Client) -> None:
    big = os.urandom(LIMIT + 50_000)  # incompressible: the upload itself passes the limit
    resp = post_model(client, unique_name("big"), model_tar({"model.safetensors": big}))
    error(resp, 413, "PayloadTooLargeError")
    zeros = safetensors_bytes({"w": [0.0] * (LIMIT // 4)})  # small archive, too large unpacked
    resp = post_model(client, unique_name("bomb"), model_tar({"model.safetensors": zeros}))
    assert "limit" in error(resp, 422, "ValidationError")["message"]


def test_deploy_preloads_and_marks_deployed(client: httpx.Client) -> None:
    name = unique_name("dep")
    ok(post_model(client, name, model_tar(GOOD["safetensors"])))
    body = ok(client.post(f"/v1/namespaces/{NS}/models/{name}_1_0_0/deploy"))
    assert body["deployment_status"] == "deployed" and body["cached"] is True
    doc = ok(client.get(f"/v1/namespaces/{NS}/models/{name}_1_0_0"))["model"]
    assert doc["deployed"] is True
    error(client.post(f"/v1/namespaces/{NS}/models/nope_1_0_0/deploy"), 404, "NotFoundError")


def test_other_organizations_and_limited_keys(app: InProcessServer, client: httpx.Client) -> None:
    accounts = runtime(app).accounts
    org = unique_name("org")
    accounts.create_organization(org)
    theirs = accounts.create_namespace("theirs", org)["namespace_id"]
    their_key, _ = accounts.create_key(org)
    mine = accounts.create_namespace("mine", namespace_id=unique_name("ns"))["namespace_id"]
    limited_key, _ = accounts.create_key(namespaces=[mine])
    name = unique_name("sec")
    ok(post_model(client, name, model_tar(GOOD["safetensors"])))
    with app.client(their_key) as them:
        error(them.get(f"/v1/namespaces/{NS}/models"), 404, "NotFoundError")
        error(them.get(f"/v1/namespaces/{NS}/models/{name}_1_0_0"), 404, "NotFoundError")
        error(them.delete(f"/v1/namespaces/{NS}/models/{name}_1_0_0"), 404, "NotFoundError")
        assert ok(them.get(f"/v1/namespaces/{theirs}/models/available"))["total"] == 0
        error(them.post(f"/v1/namespaces/{theirs}/models/org/{name}_1_0_0/enable"), 404,
              "NotFoundError")
    with app.client(limited_key) as lim:
        error(post_model(lim, unique_name("x"), model_tar(GOOD["onnx"]), "onnx"), 404,
              "NotFoundError")
        ok(post_model(lim, unique_name("x"), model_tar(GOOD["onnx"]), "onnx", ns=mine))
    with app.client("sk_wrong") as anon:
        error(anon.get(f"/v1/namespaces/{NS}/models"), 401, "AuthenticationError")


def test_org_models_available_enable_disable(app: InProcessServer, client: httpx.Client) -> None:
    other = runtime(app).accounts.create_namespace("other", namespace_id=unique_name("ns"))
    other_ns = other["namespace_id"]
    name = unique_name("org")
    ok(post_model(client, name, model_tar(GOOD["huggingface"]), "huggingface"))
    model_id = f"{name}_1_0_0"
    items = ok(client.get(f"/v1/namespaces/{other_ns}/models/available"))["models"]
    item = next(m for m in items if m["model_id"] == model_id)
    assert item["enabled_in_namespace"] is False and item["model_format"] == "huggingface"
    enabled = ok(client.post(f"/v1/namespaces/{other_ns}/models/org/{model_id}/enable",
                             json={"deploy": True, "resource_overrides": {"num_gpus": 1}}))
    assert enabled["deployment_status"] == "deployed" and enabled["namespace_id"] == other_ns
    doc = ok(client.get(f"/v1/namespaces/{other_ns}/models/{model_id}"))["model"]
    assert doc["resource_requirements"]["num_gpus"] == 1
    assert doc["source_namespace_id"] == NS
    items = ok(client.get(f"/v1/namespaces/{other_ns}/models/available"))["models"]
    assert next(m for m in items if m["model_id"] == model_id)["enabled_in_namespace"] is True
    err = error(client.post(f"/v1/namespaces/{NS}/models/org/{model_id}/disable"), 409,
                "ConflictError")
    assert "DELETE" in err["message"]
    ok(client.post(f"/v1/namespaces/{other_ns}/models/org/{model_id}/disable"))
    error(client.get(f"/v1/namespaces/{other_ns}/models/{model_id}"), 404, "NotFoundError")
    error(client.post(f"/v1/namespaces/{other_ns}/models/org/nope_1_0_0/enable"), 404,
          "NotFoundError")


# the echo service, and a function that names the model (never called: the 409 rests on
# what the code names, recorded at intake)
USER_REALTIME = ECHO_REALTIME + '''

def weights():
    from shared.models.loader import load_namespace_model
    return load_namespace_model("{model_id}")
'''

USER_MANIFEST = '''
feature_extractor_name = "{name}"
version = "1.0.0"
description = "names a namespace model"
dependencies = []
features = []
'''


def test_a_model_a_deployed_plugin_names_cannot_be_deleted(client: httpx.Client) -> None:
    name = unique_name("used")
    model_id = f"{name}_1_0_0"
    ok(post_model(client, name, model_tar(GOOD["safetensors"])))
    plugin = unique_name("user")
    archive = zip_bytes({
        "manifest.py": USER_MANIFEST.format(name=plugin),
        "pipeline.py": PIPELINE,
        "realtime.py": USER_REALTIME.replace("{model_id}", model_id),
    })
    up = ok(client.post(f"/v1/namespaces/{NS}/plugins", data={"name": plugin, "version": "1.0.0"},
                        files={"file": ("p.zip", archive, "application/zip")}))
    pid = up["plugin_id"]
    ok(client.post(f"/v1/namespaces/{NS}/plugins/{pid}/deploy"))
    status = wait_status(client, pid, {"deployed", "failed"})
    assert status["status"] == "deployed", status
    err = error(client.delete(f"/v1/namespaces/{NS}/models/{model_id}"), 409, "ConflictError")
    assert err["details"]["plugins"] == [pid] and pid in err["message"]
    ok(client.post(f"/v1/namespaces/{NS}/plugins/{pid}/undeploy"))
    wait_status(client, pid, {"not_deployed"})
    ok(client.delete(f"/v1/namespaces/{NS}/models/{model_id}"))


def test_the_openapi_document_lists_the_routes(client: httpx.Client) -> None:
    doc = ok(client.get("/openapi.json"))
    paths = doc["paths"]
    base = "/v1/namespaces/{namespace_id}/models"
    assert set(paths[base]) == {"get", "post"}
    body = paths[base]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file", "name", "version", "model_format"]
    for path in ("/available", "/org/{model_id}/enable", "/org/{model_id}/disable",
                 "/{model_id}", "/{model_id}/deploy"):
        assert base + path in paths
    assert "409" in paths[base + "/{model_id}"]["delete"]["responses"]


def test_fixed_paths_are_never_taken_for_a_model_id(client: httpx.Client) -> None:
    resp = client.delete(f"/v1/namespaces/{NS}/models/available")
    assert resp.status_code == 405, resp.text
    assert "DELETE" not in resp.headers["allow"]
    error(client.get(f"/v1/namespaces/{NS}/models/no-such-id"), 404, "NotFoundError")
