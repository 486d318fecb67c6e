"""Namespace models loaded by plugins on the local backend: models uploaded with the real
SDK, real sandboxed replicas and batch workers, each of Mixpeek's loading styles, and the
load metrics the server exposes."""

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
from support import LiveServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    cache = build_hf_cache(tmp_path_factory.mktemp("hf-cache"))
    env = {"PLUGHOST_HF_CACHE": str(cache), "PLUGHOST_BATCH_CHUNK_ROWS": "16"}
    live = LiveServer(home=tmp_path_factory.mktemp("models"), extra_env=env).start()
    try:
        upload_models(live, tmp_path_factory.mktemp("model-files"))
        yield live
    finally:
        live.stop()


def _sandboxed(server: LiveServer) -> bool:
    with server.client() as c:
        health = c.get("/healthz").json()
    return bool(health.get("sandbox", {}).get("layers", {}).get("bwrap"))


def test_load_namespace_model_gives_each_format_read_only_and_is_counted(
    server: LiveServer,
) -> None:
    answer = deploy_and_call(server, REALTIME_DIRECT, {})
    check_direct(answer, sandboxed=_sandboxed(server))
    loads = model_loads(server)
    # loaded while the service was constructed (its replica and the warm-up), reported later
    assert loads.get(("tiny_linear_1_0_0", "ok"), 0) >= 1
    assert loads.get(("tiny_bert_1_0_0", "ok"), 0) >= 1
    assert loads.get(("missing_1_0_0", "failed"), 0) >= 1


def test_lazy_mixin_lazy_model_and_load_hf_model_work_offline(server: LiveServer) -> None:
    check_lazy(deploy_and_call(server, REALTIME_LAZY, {"text": "hello world"}))
    assert model_loads(server).get(("tiny-org/tiny-bert", "ok"), 0) >= 2


def test_a_batch_job_uses_get_batch_service_and_a_namespace_state_dict(
    server: LiveServer, tmp_path: Path
) -> None:
    plugin_id = upload_plugin(server, None, PIPELINE_MODELS)
    rows = run_batch(server, plugin_id, ["hello world", "plug host", "hello"] * 12, tmp_path)
    assert len(rows) == 36
    assert {len(vector) for vector in rows["embedding"]} == {8}
    assert set(rows["linear"]) == {15.0}


def test_get_batch_service_of_a_deployed_plugin_calls_it_per_row(
    server: LiveServer, tmp_path: Path
) -> None:
    name = deployed_plugin_name(server)
    plugin_id = upload_plugin(server, None, PIPELINE_PLUGIN_SERVICE.replace("__NAME__", name))
    texts = ["a", "bb", "ccc"] * 10
    rows = run_batch(server, plugin_id, texts, tmp_path)
    assert [m["length"] for m in rows["measured"]] == [len(t) for t in texts]
    assert {m["unit"] for m in rows["measured"]} == {"chars"}
