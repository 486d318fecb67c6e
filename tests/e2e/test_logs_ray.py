"""Replica output on the Ray backend (issue 13's logs endpoint): a Serve replica's sandboxed
worker streams its lines to the server through the replica's relay, so GET .../logs answers
them as for a local replica; a batch job's Ray workers' output reaches the server's log as a
local batch worker's does."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from batch_support import submit, wait_batch
from deploy_support import NS, deploy, infer, upload, wait_for
from ray_support import RAY_AVAILABLE, RAY_SKIP_REASON, ray_server_env
from support import LiveServer, unique_name, zip_bytes
from test_logs import archive

pytestmark = pytest.mark.skipif(not RAY_AVAILABLE, reason=RAY_SKIP_REASON)

PRINTING_PIPELINE = """
print("pipeline: loaded")


def build_steps(extractor_request, container=None, base_steps=None, dataset_size=None,
                content_flags=None):
    def step(batch):
        print("step: a batch of", len(batch))
        return batch.assign(seen=1)

    return {"steps": [step]}
"""


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(home=tmp_path_factory.mktemp("ray-logs"), extra_env=ray_server_env())
    live.start(timeout=180)
    try:
        yield live
    finally:
        live.stop(timeout=60)


def _lines(c: httpx.Client, plugin_id: str, needed: str) -> list[dict[str, object]]:
    deadline = time.monotonic() + 30
    while True:
        resp = c.get(f"/v1/namespaces/{NS}/plugins/{plugin_id}/logs")
        assert resp.status_code == 200, resp.text
        lines = list(resp.json()["lines"])
        if any(needed in str(line["line"]) for line in lines) or time.monotonic() > deadline:
            return lines


def test_ray_replica_output_reaches_the_logs_endpoint(ray_server: LiveServer) -> None:
    name = unique_name("raytalk")
    with ray_server.client() as c:
        plugin_id = upload(c, name, archive(name))
        deploy(c, plugin_id)
        status, _ = wait_for(c, plugin_id, {"deployed", "failed"}, timeout=180)
        assert status["status"] == "deployed", status
        for n in range(3):
            assert infer(c, status["route_prefix"], {"n": n}).status_code == 200
        lines = _lines(c, plugin_id, "logged 2")
    texts = [str(line["line"]) for line in lines]
    # printed at import, before the server followed the worker: kept and sent first
    for wanted in ("init: loading the model", "init: service built", "call 0", "call 2"):
        assert wanted in texts, texts
    assert texts.index("init: loading the model") < texts.index("call 0") < texts.index("call 2")
    by_text = {str(line["line"]): line for line in lines}
    assert by_text["init: to stderr"]["stream"] == "stderr"
    assert by_text["WARNING talker: logged 1"]["stream"] == "log"
    replicas = {str(line["replica"]) for line in lines}
    assert len(replicas) == 1 and replicas.pop().startswith(f"r{status['release_id']}-")


def test_ray_batch_worker_output_reaches_the_server_log(ray_server: LiveServer) -> None:
    name = unique_name("raybatchtalk")
    files = {
        "manifest.py": f'feature_extractor_name = "{name}"\nversion = "1.0.0"\n',
        "pipeline.py": PRINTING_PIPELINE,
    }
    with ray_server.client() as c:
        plugin_id = upload(c, name, zip_bytes(files))
    rows = "\n".join(json.dumps({"text": f"row {i}"}) for i in range(10)).encode()
    r = submit(ray_server, plugin_id, rows, "rows.jsonl")
    body = wait_batch(ray_server, r.json()["status_endpoint"], timeout=300)
    assert body["status"] == "completed", body
    log = ray_server.logs()
    assert "(Ray): pipeline: loaded" in log and "(Ray): step: a batch of 10" in log, log[-3000:]
