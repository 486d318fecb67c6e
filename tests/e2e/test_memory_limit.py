"""A replica that allocates past its memory limit (``serve_config.memory_gb``: its cgroup's
memory limit, or the sandbox's address-space rlimit where cgroups are not writable, issue
28) is reported in plain words naming the limit (issue 17): at load, the release fails
saying so; in a call, the 500 says so and the replica keeps serving (under a cgroup the
kernel killed it: a new one takes its place)."""

from __future__ import annotations

import time

import pytest
from deploy_support import NS, deploy, infer, status, upload, wait_for
from support import PIPELINE, LiveServer, unique_name, zip_bytes

MANIFEST = """
feature_extractor_name = "{name}"
version = "1.0.0"
features = []
serve_config = {{"memory_gb": 0.5}}
"""

AT_LOAD = """
class Service:
    def __init__(self):
        self.blob = bytearray(800 * 1024 * 1024)

    def run_inference(self, inputs, parameters):
        return {"ok": True}

def get_inference_service(**kwargs):
    return Service()
"""

IN_CALL = """
class Service:
    def run_inference(self, inputs, parameters):
        if inputs.get("hog"):
            blob = bytearray(800 * 1024 * 1024)
            return {"size": len(blob)}
        return {"ok": True}

def get_inference_service(**kwargs):
    return Service()
"""


def _sandboxed(server: LiveServer) -> bool:
    with server.client() as c:
        sandbox = c.get("/healthz").json().get("sandbox") or {}
    layers = sandbox.get("layers") or {}
    return bool(layers.get("rlimits")) if isinstance(layers, dict) else "rlimits" in layers


def _layer(server: LiveServer) -> str:
    """What bounds memory here: cgroup-v1, cgroup-v2 or rlimit (``/healthz``)."""
    with server.client() as c:
        return str((c.get("/healthz").json().get("sandbox") or {}).get("memory_limit"))


def _words(server: LiveServer) -> str:
    if _layer(server).startswith("cgroup"):
        return "killed: past its memory limit of 512 MB (cgroup)"
    return "exceeded its memory limit of 512 MiB"


def _archive(name: str, realtime: str) -> bytes:
    return zip_bytes(
        {"manifest.py": MANIFEST.format(name=name), "pipeline.py": PIPELINE, "realtime.py": realtime}
    )


def test_a_replica_past_its_memory_limit_at_load_fails_the_release_naming_the_limit(
    server: LiveServer,
) -> None:
    if not _sandboxed(server):
        pytest.skip("no rlimits layer on this machine")
    name = unique_name("memload")
    with server.client() as c:
        pid = upload(c, name, _archive(name, AT_LOAD))
        deploy(c, pid)
        body, _ = wait_for(c, pid, {"failed", "deployed"})
    assert body["status"] == "failed", body
    assert _words(server) in body["error"], body["error"]


def test_a_call_past_the_memory_limit_says_so_and_the_replica_keeps_serving(
    server: LiveServer,
) -> None:
    if not _sandboxed(server):
        pytest.skip("no rlimits layer on this machine")
    name = unique_name("memcall")
    route = f"/inference/{NS}/{name}"
    with server.client() as c:
        pid = upload(c, name, _archive(name, IN_CALL))
        deploy(c, pid)
        wait_for(c, pid, {"deployed"})
        r = infer(c, route, {"hog": True})
        assert r.status_code == 500, r.text
        error = r.json()["error"]
        assert error["type"] == "PluginError"
        assert f"{_words(server)} during this call" in error["message"], error
        deadline = time.monotonic() + 60  # under a cgroup: the killed replica is replaced
        while (r := infer(c, route, {})).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert r.json() == {"ok": True}
        assert status(c, pid)["status"] == "deployed"
