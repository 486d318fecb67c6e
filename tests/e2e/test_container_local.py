"""``container.secrets`` and ``container.llm`` from plugin code on the local backend: real
servers, real sandboxed replicas and batch workers, the real SDK, and a tiny
OpenAI-compatible server of the tests' own on loopback."""

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
from support import LiveServer


@pytest.fixture(scope="module")
def llm() -> Iterator[LlmServer]:
    server = LlmServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, llm: LlmServer) -> Iterator[LiveServer]:
    env = {
        "PLUGHOST_LLM_BASE_URL": llm.url,
        "PLUGHOST_LLM_API_KEY": SERVER_LLM_KEY,
        "PLUGHOST_LLM_MODEL_MAP": MODEL_MAP,
    }
    live = LiveServer(home=tmp_path_factory.mktemp("container"), extra_env=env).start()
    set_secret(live, SECRET_NAME, SECRET_VALUE)
    try:
        yield live
    finally:
        live.stop()


def test_an_async_service_reads_secrets_and_calls_the_llm_without_seeing_its_key(
    server: LiveServer, llm: LlmServer
) -> None:
    pid = upload(server, REALTIME_ASYNC)
    deploy_and_wait(server, pid)
    before = len(llm.requests)
    answer = call(server, pid, {"text": "rainy afternoon"})
    assert answer["secret"] == SECRET_VALUE
    assert answer["missing"] is None
    assert SECRET_NAME in answer["names"]
    assert answer["text"] == "echo: Summarise\n\nrainy afternoon"
    assert answer["tagged"] == {"label": "about: Tag\n\nrainy afternoon", "ok": True}
    # the plugin's process holds neither the LLM key nor the server's own credentials
    assert not any(SERVER_LLM_KEY in value for value in answer["env"])
    assert not any(server.key in value for value in answer["env"])
    sent = llm.requests[before:]
    assert len(sent) == 2
    assert all(r["auth"] == f"Bearer {SERVER_LLM_KEY}" for r in sent)
    assert all(r["body"]["model"] == "tiny-test-model" for r in sent)  # mapped
    assert "response_format" not in sent[0]["body"]
    assert sent[1]["body"]["response_format"]["type"] == "json_schema"
    assert SERVER_LLM_KEY not in str(answer)


def test_a_realtime_handler_runs_the_container_on_a_loop_of_its_own(
    server: LiveServer, llm: LlmServer
) -> None:
    pid = upload(server, REALTIME_HANDLER)
    route = deploy_and_wait(server, pid)
    images = ["https://example.test/cat.png"]
    # many calls: the replica keeps plain calls off its loop once the plugin uses the container
    for i in range(20):
        r = infer(server, route, {"text": f"call {i}", "images": images})
        assert r.status_code == 200, r.text
        assert r.json()["text"] == f"echo: Describe\n\ncall {i} [1 images]"
    last = llm.requests[-1]["body"]
    parts = last["messages"][0]["content"]
    assert {"type": "image_url", "image_url": {"url": images[0]}} in parts
    refused = r.json()["inference"]
    assert "container.inference.get('clip')" in refused and "container.llm" in refused


def test_a_batch_pipeline_gets_the_container_in_build_steps_and_its_steps(
    server: LiveServer, llm: LlmServer, tmp_path: Path
) -> None:
    pid = upload(server, None, PIPELINE_LLM)
    texts = [f"row {i}" for i in range(40)]
    before = len(llm.requests)
    out = run_batch(server, pid, texts, tmp_path)
    assert out["text"].tolist() == texts
    assert out["label"].tolist() == [f"about: Tag\n\n{t}" for t in texts]
    assert out["key_matches"].all()
    assert len(llm.requests) - before == len(texts)


def test_a_server_without_an_llm_endpoint_answers_an_error_naming_the_setting(
    tmp_path: Path,
) -> None:
    bare = LiveServer(home=tmp_path / "bare").start()
    try:
        pid = upload(bare, REALTIME_HANDLER)
        route = deploy_and_wait(bare, pid)
        r = infer(bare, route, {"text": "hello"})
        assert r.status_code == 500, r.text
        error = r.json()["error"]
        assert error["type"] == "PluginError"
        assert "LLMNotConfigured" in error["message"]
        assert "PLUGHOST_LLM_BASE_URL" in error["message"]
    finally:
        bare.stop()
