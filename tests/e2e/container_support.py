"""Plugins that call ``container.secrets`` and ``container.llm`` in the styles Mixpeek's
documentation shows, packed as ``mixpeek plugin publish`` packs them (a tar.gz with a top
folder), and the helpers the container tests of both backends share."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from support import LiveServer, sdk_client, tar_gz_bytes, unique_name

NS = "ns_default"
SECRET_NAME = "weather_key"
SECRET_VALUE = "wk-7f3a9c-visible-only-to-the-plugin"
SERVER_LLM_KEY = "sk-server-side-llm-key-0123456789"
MODEL_MAP = json.dumps({"gemini-2.5-flash": "tiny-test-model"})

MANIFEST = """
feature_extractor_name = "{name}"
version = "1.0.0"
description = "container test plugin"
dependencies = []
features = [{{"feature_type": "embedding", "feature_name": "vec", "embedding_dim": 4,
             "distance_metric": "cosine"}}]
output_schema = {{"type": "object"}}
serve_config = {{"num_replicas": 1}}
"""

PIPELINE_NOOP = """
def build_steps(extractor_request, container=None, **kwargs):
    return {"steps": [lambda df: df]}
"""

# an async run_inference on a BaseInferenceService: awaits the container on the replica's loop
REALTIME_ASYNC = """
import os

from shared.plugins.inference.serve import BaseInferenceService

SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}, "ok": {"type": "boolean"}}}


class ContainerInferenceService(BaseInferenceService):
    async def run_inference(self, inputs, parameters):
        container = self.container
        text = inputs.get("text", "")
        plain = await container.llm.generate(
            instruction="Summarise", text=text, provider="google", model="gemini-2.5-flash"
        )
        tagged = await container.llm.generate(
            instruction="Tag", text=text, provider="google", model="gemini-2.5-flash",
            schema=SCHEMA,
        )
        return {
            "secret": await container.secrets.get("weather_key"),
            "missing": await container.secrets.get("no_such_secret"),
            "names": await container.secrets.list(),
            "text": plain.data,
            "tagged": tagged.data,
            "env": sorted(os.environ.values()),
        }
"""

# the CLI page's handler: no base class, a plain predict(request); the docs' older examples
# run each container coroutine on a loop of their own
REALTIME_HANDLER = """
import asyncio


class RealtimeHandler:
    def predict(self, request):
        loop = asyncio.new_event_loop()
        try:
            answer = loop.run_until_complete(
                self.container.llm.generate(
                    instruction="Describe", text=request.get("text", ""),
                    images=request.get("images"), model="gemini-2.5-flash",
                )
            )
        finally:
            loop.close()
        try:
            self.container.inference.get("clip")
            refused = ""
        except Exception as exc:
            refused = str(exc)
        return {"text": answer.data, "inference": refused}
"""

# a batch pipeline: build_steps reads a secret, a step instance calls the LLM per row on
# its own event loop, concurrently
PIPELINE_LLM = """
import asyncio

SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}}


class TagStep:
    def __init__(self, config, progress_actor=None):
        self._llm = config["llm"]
        self._key = config["key"]

    def __call__(self, batch):
        async def one(text):
            return await self._llm.generate(
                instruction="Tag", text=text, provider="google", model="gemini-2.5-flash",
                schema=SCHEMA,
            )

        async def every(texts):
            return await asyncio.gather(*(one(t) for t in texts))

        loop = asyncio.new_event_loop()
        try:
            results = loop.run_until_complete(every(batch["text"].tolist()))
        finally:
            loop.close()
        batch["label"] = [r.data["label"] for r in results]
        batch["key_matches"] = [self._key == "wk-7f3a9c-visible-only-to-the-plugin"] * len(batch)
        return batch


def build_steps(extractor_request, container=None, **kwargs):
    loop = asyncio.new_event_loop()
    try:
        key = loop.run_until_complete(container.secrets.get("weather_key"))
    finally:
        loop.close()
    return {"steps": [TagStep({"llm": container.llm, "key": key})]}
"""


def archive(name: str, realtime: str | None, pipeline: str = PIPELINE_NOOP) -> bytes:
    """The plugin as ``mixpeek plugin publish`` packs it: a tar.gz with one top folder."""
    files: dict[str, str | bytes] = {
        "manifest.py": MANIFEST.format(name=name),
        "pipeline.py": pipeline,
    }
    if realtime is not None:
        files["realtime.py"] = realtime
    return tar_gz_bytes(files, folder=f"{name}/")


def _api(server: LiveServer) -> Any:
    from mixpeek.api.custom_plugins_namespace_api import CustomPluginsNamespaceApi

    return CustomPluginsNamespaceApi(sdk_client(server))


def upload(server: LiveServer, realtime: str | None, pipeline: str = PIPELINE_NOOP) -> str:
    """Upload a new plugin with the SDK's one-step upload; its id, validated."""
    name = unique_name("ctr")
    body = (
        _api(server)
        .upload_plugin_namespaces(
            NS, file=archive(name, realtime, pipeline), name=name, version="1.0.0"
        )
        .to_dict()
    )
    assert body["validation_status"] == "passed", body
    return str(body["plugin_id"])


def set_secret(server: LiveServer, name: str, value: str) -> None:
    """Through the real SDK's OrganizationSecretsApi (a repeat run updates it)."""
    import mixpeek
    from mixpeek.exceptions import ApiException

    api = mixpeek.OrganizationSecretsApi(sdk_client(server))
    try:
        api.create_secret_organizations(
            mixpeek.CreateSecretRequest(secret_name=name, secret_value=value)
        )
    except ApiException as exc:
        assert exc.status == 409, exc
        api.update_secret_organizations_name(name, mixpeek.UpdateSecretRequest(secret_value=value))


def deploy_and_wait(server: LiveServer, plugin_id: str, timeout: float = 180.0) -> str:
    """Deploy with the SDK and wait until it serves; its inference route."""
    answer = _api(server).deploy_plugin_namespaces(NS, plugin_id)
    deadline = time.monotonic() + timeout
    with server.client() as c:
        while time.monotonic() < deadline:
            body = c.get(f"/v1/namespaces/{NS}/plugins/{plugin_id}/status").json()
            assert body.get("status") != "failed", body
            if body.get("status") == "deployed":
                return str(answer["route_prefix"])
            time.sleep(0.1)
    raise AssertionError(f"{plugin_id} not deployed in {timeout} s:\n{server.logs()[-4000:]}")


def call(server: LiveServer, plugin_id: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """A realtime call through the SDK (the realtime test route); the plugin's answer."""
    from mixpeek import models as m

    test = _api(server).test_realtime_inference_namespaces_id_plugins(
        NS, plugin_id, plugin_realtime_test_request=m.PluginRealtimeTestRequest(inputs=inputs)
    )
    assert test.status == "success", test
    return dict(test.raw_response)


def infer(server: LiveServer, route: str, inputs: dict[str, Any]) -> httpx.Response:
    with server.client() as c:
        return c.post(route, json={"inputs": inputs, "parameters": {}})


def run_batch(server: LiveServer, plugin_id: str, texts: list[str], tmp: Path) -> pd.DataFrame:
    """Submit a JSONL batch of ``texts`` and return its output rows in input order."""
    lines = "\n".join(json.dumps({"text": t}) for t in texts).encode() + b"\n"
    with server.client() as c:
        r = c.post(
            f"/v1/namespaces/{NS}/plugins/{plugin_id}/batches",
            files={"file": ("in.jsonl", lines, "application/octet-stream")},
        )
        assert r.status_code in (200, 201, 202), r.text
        endpoint = r.json()["status_endpoint"]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            body = c.get(endpoint).json()
            if body.get("status") in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.2)
    assert body.get("status") == "completed", f"{body}\n{server.logs()[-4000:]}"
    data = httpx.get(body["output_url"], timeout=60).content
    return pd.read_parquet(io.BytesIO(data))
