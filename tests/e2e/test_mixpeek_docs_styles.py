"""Every handler and step style of Mixpeek's docs runs on plughost unchanged.

Four plugins of our own in ``mixpeek_plugins/docs_*``, each written the way one page of
Mixpeek's documentation writes plugins:
- ``docs_cli`` (the CLI page): a folder without any ``__init__.py`` whose pipeline imports
  ``.manifest`` and ``.processors.core`` relatively; ``class RealtimeHandler`` with
  ``predict(self, request)`` and no base class; steps built from ``(config,
  progress_actor=None)`` and ``(config)`` constructors; features in the documented keys;
- ``docs_quickstart`` (the quick start and the plugins page): a BaseInferenceService with
  only ``async __call__(inputs, parameters)``; ``build_steps`` with five named parameters and
  no ``**kwargs`` returning a ready-made ``(config=None, **kwargs)`` instance and a plain
  function; ``input_mappings``; ``compute_profile``; features in the short key style;
- ``docs_factory``: ``get_inference_service`` returning a handler with ``async predict``;
  only ``extract(...)``, returning an object with ``steps`` and ``prepare``; a
  ``(config, **kwargs)`` constructor;
- ``docs_definition`` (batch only): a module-level ``extractor_definition`` naming the
  builder; a class and an ``async`` function as steps.

Each is packed as ``mixpeek plugin publish`` packs it (tar.gz with a top folder), uploaded,
deployed, read back and called through the real SDK (``mixpeek==0.81.1``) and over HTTP, and
run as a batch job, on every backend of ``PLUGHOST_TEST_BACKENDS``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from batch_support import download, submit, wait_batch
from deploy_support import NS, infer
from mixpeek import models as M
from mixpeek.api.custom_plugins_namespace_api import CustomPluginsNamespaceApi
from ray_support import RAY_AVAILABLE, RAY_SKIP_REASON, TEST_BACKENDS, ray_server_env
from support import LiveServer, dir_files, sdk_client, tar_gz_bytes, unique_name

PLUGINS = Path(__file__).resolve().parent / "mixpeek_plugins"
TEXTS = ["hello world", "a 1 b 22", "skip", "three little words"]


def _backends() -> list[Any]:
    legs = [pytest.param("local", id="local")] if "local" in TEST_BACKENDS else []
    if "ray" in TEST_BACKENDS:
        marks = [] if RAY_AVAILABLE else [pytest.mark.skip(reason=RAY_SKIP_REASON)]
        legs.append(pytest.param("ray", id="ray", marks=marks))
    return legs


@pytest.fixture(scope="module", params=_backends())
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One live server (SQLite) per backend."""
    env = ray_server_env() if request.param == "ray" else {}
    srv = LiveServer(home=tmp_path_factory.mktemp(f"home-docs-{request.param}"), extra_env=env)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def api(server: LiveServer) -> CustomPluginsNamespaceApi:
    return CustomPluginsNamespaceApi(sdk_client(server))


def publish(api: CustomPluginsNamespaceApi, plugin: str) -> str:
    """Upload ``plugin`` as a tar.gz with its folder on top through the SDK; its plugin_id."""
    archive = tar_gz_bytes(dir_files(PLUGINS / plugin), folder=f"{plugin}/")
    up = api.upload_plugin_namespaces(NS, file=archive, name=unique_name(plugin), version="1.0.0")
    assert up.success and up.validation_status == "passed", up
    return str(up.plugin_id)


def deploy_through_sdk(server: LiveServer, api: CustomPluginsNamespaceApi, pid: str) -> str:
    """Deploy with the SDK and poll its status model until deployed; the route prefix."""
    answer = api.deploy_plugin_namespaces(NS, pid)
    assert answer["status"] == "queued", answer
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        st = api.get_deployment_status_namespaces_id_plugins(NS, pid)
        if st.status in ("deployed", "failed"):
            break
        time.sleep(0.1)
    assert st.status == "deployed", (st.status, st.error, server.logs()[-3000:])
    return str(st.route_prefix)


def realtime_test(api: CustomPluginsNamespaceApi, pid: str, inputs: dict[str, Any]) -> Any:
    return api.test_realtime_inference_namespaces_id_plugins(
        NS, pid, plugin_realtime_test_request=M.PluginRealtimeTestRequest(inputs=inputs)
    )


def run_batch(
    server: LiveServer, pid: str, tmp: Path, parameters: dict[str, Any] | None = None
) -> pd.DataFrame:
    """A batch job over TEXTS (a jsonl file with a ``text`` column); its output rows."""
    content = "\n".join(json.dumps({"text": t}) for t in TEXTS).encode() + b"\n"
    r = submit(server, pid, content, "rows.jsonl", parameters=parameters)
    assert r.status_code == 202, r.text
    body = wait_batch(server, r.json()["status_endpoint"], timeout=240)
    assert body["status"] == "completed", (body, server.logs()[-3000:])
    return pd.read_parquet(download(body["output_url"], tmp / f"{pid}.parquet"))


def call(c: httpx.Client, route: str, inputs: dict[str, Any], **params: Any) -> dict[str, Any]:
    resp = infer(c, route, inputs, params)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


# -- realtime: each handler style answers with what it returned ------------------------------
def test_cli_realtime_handler_with_predict_deploys_and_answers(
    server: LiveServer, api: CustomPluginsNamespaceApi
) -> None:
    pid = publish(api, "docs_cli")
    route = deploy_through_sdk(server, api, pid)
    with server.client() as c:
        answer = call(c, route, {"text": "ab 12 c"}, ignored=True)
    assert answer == {"embedding": [3.0, 2.0, 2.0], "style": "cli_predict"}
    tested = realtime_test(api, pid, {"text": "xyz"})
    assert tested.status == "success" and tested.response_keys == ["embedding", "style"]
    manifest = api.get_plugin_namespaces(NS, pid).plugin.manifest
    assert manifest.features == [
        {
            "feature_name": "my_embedding",
            "feature_type": "embedding",
            "embedding_dim": 3,
            "distance_metric": "cosine",
        }
    ]


def test_async_call_on_a_base_service_deploys_and_answers(
    server: LiveServer, api: CustomPluginsNamespaceApi
) -> None:
    pid = publish(api, "docs_quickstart")
    route = deploy_through_sdk(server, api, pid)
    with server.client() as c:
        answer = call(c, route, {"text": "hello"}, dim=3)
    assert answer["style"] == "async_call" and len(answer["embedding"]) == 3
    stored = api.get_plugin_namespaces(NS, pid).plugin.manifest
    # the short key style gains the documented names; the given keys stay
    (feature,) = stored.features or []
    assert feature["feature_type"] == "embedding" and feature["type"] == "vector"
    assert feature["feature_name"] == "text_embed_v1_embedding"
    assert feature["embedding_dim"] == 8 and feature["distance_metric"] == "cosine"
    assert stored.compute_profile == {"resource_type": "cpu", "batch_size": 4}


def test_factory_handler_with_async_predict_deploys_and_answers(
    server: LiveServer, api: CustomPluginsNamespaceApi
) -> None:
    pid = publish(api, "docs_factory")
    route = deploy_through_sdk(server, api, pid)
    with server.client() as c:
        assert call(c, route, {"text": "abcd"}) == {"length": 8, "style": "factory_async_predict"}
    assert realtime_test(api, pid, {"text": "a"}).status == "success"


# -- batch: each builder and step style runs as a job ----------------------------------------
def test_cli_pipeline_with_relative_imports_runs_as_a_batch_job(
    server: LiveServer, api: CustomPluginsNamespaceApi, tmp_path: Path
) -> None:
    pid = publish(api, "docs_cli")
    out = run_batch(server, pid, tmp_path, parameters={"threshold": 4})
    assert list(out["text"]) == TEXTS
    assert [list(v) for v in out["my_embedding"]] == [
        [10.0, 0.0, 1.0],
        [2.0, 3.0, 3.0],
        [4.0, 0.0, 0.0],
        [16.0, 0.0, 2.0],
    ]
    assert list(out["above"]) == [True, False, False, True]
    assert set(out["mark"]) == {"cli"}


def test_quick_start_build_steps_with_a_ready_made_instance_runs_as_a_batch_job(
    server: LiveServer, api: CustomPluginsNamespaceApi, tmp_path: Path
) -> None:
    pid = publish(api, "docs_quickstart")
    out = run_batch(server, pid, tmp_path)
    assert list(out["text"]) == TEXTS
    assert list(out["words"]) == [2, 4, 1, 3]
    assert all(len(v) == 8 for v in out["text_embed_v1_embedding"])


def test_extract_only_pipeline_runs_with_its_prepare_as_a_batch_job(
    server: LiveServer, api: CustomPluginsNamespaceApi, tmp_path: Path
) -> None:
    pid = publish(api, "docs_factory")
    out = run_batch(server, pid, tmp_path, parameters={"scale": 10})
    assert list(out["text"]) == [t for t in TEXTS if t != "skip"]  # extract's prepare filtered
    assert list(out["length"]) == [110, 80, 180]
    assert set(out["extra_kwargs"]) == {0}  # progress_actor is not pushed into **kwargs


def test_extractor_definition_with_class_and_async_steps_runs_as_a_batch_job(
    server: LiveServer, api: CustomPluginsNamespaceApi, tmp_path: Path
) -> None:
    pid = publish(api, "docs_definition")
    out = run_batch(server, pid, tmp_path)
    assert list(out["upper"]) == [t.upper() + "!" for t in TEXTS]
    assert list(out["annotated"]) == [True] * len(TEXTS)
