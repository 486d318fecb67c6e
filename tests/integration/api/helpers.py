"""What the API-surface tests share: the error shape, small plugins and their upload, the
runtime behind an in-process app, and a bounded wait on a deployment's status."""

from __future__ import annotations

import time
from typing import Any

import httpx
from inproc import InProcessServer
from support import PIPELINE, zip_bytes

NS = "ns_default"

# a realtime service that echoes its text, and raises on `boom` (the plugin's own error)
ECHO_REALTIME = """
try:
    from shared.plugins.inference.serve import BaseInferenceService
except ImportError:
    class BaseInferenceService:
        def __init__(self, **kwargs):
            self.config = kwargs


class Service(BaseInferenceService):
    def run_inference(self, inputs, parameters):
        if inputs.get("boom"):
            raise ValueError("plugin says boom")
        return {"echo": inputs.get("text"), "parameters": parameters}
"""

MANIFEST = """
feature_extractor_name = "{name}"
version = "{version}"
description = "api test plugin"
dependencies = []
features = []
serve_config = {{"num_replicas": 1}}
"""


def error(resp: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    """The contract's error body of ``resp``, after checking its status and type."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"success", "status", "error"}, body
    assert body["success"] is False and body["status"] == status, body
    assert set(body["error"]) == {"message", "type", "details"}, body
    assert body["error"]["type"] == error_type, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    return dict(body["error"])


def archive(name: str, version: str = "1.0.0", realtime: bool = True) -> bytes:
    files: dict[str, str | bytes] = {
        "manifest.py": MANIFEST.format(name=name, version=version),
        "pipeline.py": PIPELINE,
    }
    if realtime:
        files["realtime.py"] = ECHO_REALTIME
    return zip_bytes(files)


def upload(
    c: httpx.Client, name: str, version: str = "1.0.0", ns: str = NS, realtime: bool = True
) -> str:
    """Register a plugin through the multipart route; its plugin id."""
    resp = c.post(
        f"/v1/namespaces/{ns}/plugins",
        data={"name": name, "version": version},
        files={"file": ("p.zip", archive(name, version, realtime), "application/zip")},
    )
    body = resp.json()
    assert resp.status_code == 200 and body["success"] is True, body
    return str(body["plugin_id"])


def wait_status(
    c: httpx.Client, plugin_id: str, targets: set[str], ns: str = NS, timeout: float = 120.0
) -> dict[str, Any]:
    """Poll the status until it is one of ``targets``; the last body."""
    deadline = time.monotonic() + timeout
    while True:
        body = c.get(f"/v1/namespaces/{ns}/plugins/{plugin_id}/status").json()
        if body.get("status") in targets:
            return dict(body)
        assert time.monotonic() < deadline, f"{plugin_id} never reached {targets}: {body}"
        time.sleep(0.1)


def runtime(app: InProcessServer) -> Any:
    """The app's Runtime (accounts, services), to set up organizations and keys directly."""
    assert app.transport is not None
    return app.transport.app.state.runtime  # type: ignore[attr-defined]
