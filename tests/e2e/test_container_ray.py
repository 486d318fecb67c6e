"""``container.secrets`` and ``container.llm`` on the Ray backend: a Serve replica's sandboxed
worker sends its container calls back over the server's direct channel to it; a batch job's
Ray Data actors forward their workers' calls through the job's mailbox actor. The server
holds the secrets and the LLM key in both cases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from container_support import (
    MODEL_MAP,
    PIPELINE_LLM,
    REALTIME_ASYNC,
    REALTIME_HANDLER,
    SECRET_NAME,
    SECRET_VALUE,
    SERVER_LLM_KEY,
    call,
    deploy_and_wait,
    infer,
    run_batch,
    set_secret,
    upload,
)
from llm_server import LlmServer
from ray_support import RAY_AVAILABLE, RAY_SKIP_REASON, ray_server_env
from support import LiveServer

pytestmark = pytest.mark.skipif(not RAY_AVAILABLE, reason=RAY_SKIP_REASON)


@pytest.fixture(scope="module")
def llm() -> Iterator[LlmServer]:
    server = LlmServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory: pytest.TempPathFactory, llm: LlmServer) -> Iterator[LiveServer]:
    env = {
        **ray_server_env(),
        "PLUGHOST_LLM_BASE_URL": llm.url,
        "PLUGHOST_LLM_API_KEY": SERVER_LLM_KEY,
        "PLUGHOST_LLM_MODEL_MAP": MODEL_MAP,
        "PLUGHOST_BATCH_CHUNK_ROWS": "16",
    }
    live = LiveServer(home=tmp_path_factory.mktemp("container-ray"), extra_env=env)
    live.start(timeout=180)
    set_secret(live, SECRET_NAME, SECRET_VALUE)
    try:
        yield live
    finally:
        live.stop(timeout=60)


def test_a_serve_replica_reads_secrets_and_calls_the_llm_through_the_server(
    ray_server: LiveServer, llm: LlmServer
) -> None:
    pid = upload(ray_server, REALTIME_ASYNC)
    deploy_and_wait(ray_server, pid, timeout=240)
    before = len(llm.requests)
    answer = call(ray_server, pid, {"text": "on ray"})
    assert answer["secret"] == SECRET_VALUE
    assert SECRET_NAME in answer["names"]
    assert answer["text"] == "echo: Summarise\n\non ray"
    assert answer["tagged"] == {"label": "about: Tag\n\non ray", "ok": True}
    assert not any(SERVER_LLM_KEY in value for value in answer["env"])
    assert all(r["auth"] == f"Bearer {SERVER_LLM_KEY}" for r in llm.requests[before:])


def test_a_plain_handler_on_ray_runs_the_container_on_its_own_loop(
    ray_server: LiveServer,
) -> None:
    pid = upload(ray_server, REALTIME_HANDLER)
    route = deploy_and_wait(ray_server, pid, timeout=240)
    for i in range(3):
        r = infer(ray_server, route, {"text": f"ray {i}"})
        assert r.status_code == 200, r.text
        assert r.json()["text"] == f"echo: Describe\n\nray {i}"


def test_a_ray_data_job_gets_the_container_through_its_mailbox(
    ray_server: LiveServer, llm: LlmServer, tmp_path: Path
) -> None:
    pid = upload(ray_server, None, PIPELINE_LLM)
    texts = [f"ray row {i}" for i in range(40)]
    out = run_batch(ray_server, pid, texts, tmp_path)
    assert out["text"].tolist() == texts
    assert out["label"].tolist() == [f"about: Tag\n\n{t}" for t in texts]
    assert out["key_matches"].all()
