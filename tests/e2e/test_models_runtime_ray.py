"""Namespace models loaded by plugins on the Ray backend: a Serve replica's sandboxed worker
and a batch job's Ray Data workers see the namespace's model folder read-only at the same
path as on the local backend, and the shared Hugging Face cache (one machine here; a cluster
of several needs the models cache on a file system every node mounts at the same path)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from container_support import run_batch
from models_support import (
    PIPELINE_MODELS,
    PIPELINE_PLUGIN_SERVICE,
    REALTIME_DIRECT,
    REALTIME_LAZY,
    build_hf_cache,
    check_direct,
    check_lazy,
    deploy_and_call,
    deployed_plugin_name,
    model_loads,
    upload_models,
    upload_plugin,
)
from ray_support import RAY_AVAILABLE, RAY_SKIP_REASON, ray_server_env
from support import LiveServer

pytestmark = pytest.mark.skipif(not RAY_AVAILABLE, reason=RAY_SKIP_REASON)


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    cache = build_hf_cache(tmp_path_factory.mktemp("hf-cache"))
    env = {
        **ray_server_env(),
        "PLUGHOST_HF_CACHE": str(cache),
        "PLUGHOST_BATCH_CHUNK_ROWS": "16",
    }
    live = LiveServer(home=tmp_path_factory.mktemp("models-ray"), extra_env=env)
    live.start(timeout=180)
    try:
        upload_models(live, tmp_path_factory.mktemp("model-files"))
        yield live
    finally:
        live.stop(timeout=60)


def _sandboxed(server: LiveServer) -> bool:
    with server.client() as c:
        health = c.get("/healthz").json()
    return bool(health.get("sandbox", {}).get("layers", {}).get("bwrap"))


def test_a_serve_replica_loads_each_format_read_only(ray_server: LiveServer) -> None:
    check_direct(deploy_and_call(ray_server, REALTIME_DIRECT, {}), _sandboxed(ray_server))
    loads = model_loads(ray_server)
    assert loads.get(("tiny_linear_1_0_0", "ok"), 0) >= 1
    assert loads.get(("missing_1_0_0", "failed"), 0) >= 1


def test_a_serve_replica_loads_lazily_and_offline(ray_server: LiveServer) -> None:
    check_lazy(deploy_and_call(ray_server, REALTIME_LAZY, {"text": "plug host"}))


def test_a_ray_data_job_loads_models_in_its_workers(
    ray_server: LiveServer, tmp_path: Path
) -> None:
    plugin_id = upload_plugin(ray_server, None, PIPELINE_MODELS)
    rows = run_batch(ray_server, plugin_id, ["hello world", "plug host"] * 20, tmp_path)
    assert len(rows) == 40
    assert {len(vector) for vector in rows["embedding"]} == {8}
    assert set(rows["linear"]) == {15.0}


def test_a_ray_data_job_calls_a_deployed_plugin_through_get_batch_service(
    ray_server: LiveServer, tmp_path: Path
) -> None:
    name = deployed_plugin_name(ray_server)
    plugin_id = upload_plugin(ray_server, None, PIPELINE_PLUGIN_SERVICE.replace("__NAME__", name))
    texts = ["plug", "host"] * 10
    rows = run_batch(ray_server, plugin_id, texts, tmp_path)
    assert [m["length"] for m in rows["measured"]] == [4] * 20
