"""Helpers for deployment tests: upload, deploy, and watch statuses over HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
from support import PIPELINE, zip_bytes

NS = "ns_default"

REALTIME_TEMPLATE = '''
import os
import sys
import time

# Sandboxed replicas live in their own pid namespace (every one sees itself as pid 2), so a
# replica is told apart by its socket path, which its command line carries.
REPLICA = sys.argv[sys.argv.index("--socket") + 1] if "--socket" in sys.argv else str(os.getpid())

try:
    from shared.plugins.inference.serve import BaseInferenceService
except ImportError:
    class BaseInferenceService:
        def __init__(self, **kwargs):
            self.config = kwargs


class Service(BaseInferenceService):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        time.sleep({start_delay})
        if {fail_init!r}:
            raise RuntimeError({fail_init!r})

    def run_inference(self, inputs, parameters):
        if inputs.get("boom"):
            raise ValueError("plugin says boom: " + str(inputs["boom"]))
        if inputs.get("sleep"):
            time.sleep(float(inputs["sleep"]))
        return {{"tag": {tag!r}, "pid": os.getpid(), "replica": REPLICA, "text": inputs.get("text")}}
'''

MANIFEST_TEMPLATE = '''
feature_extractor_name = "{name}"
version = "{version}"
description = "deployment test plugin"
dependencies = []
features = []
serve_config = {{"num_replicas": {replicas}}}
{extra}
'''


def plugin_archive(
    name: str, version: str = "1.0.0", tag: str = "v1", start_delay: float = 0.0,
    fail_init: str = "", replicas: int = 1, extra_manifest: str = "", realtime: bool = True,
) -> bytes:
    files: dict[str, str | bytes] = {
        "manifest.py": MANIFEST_TEMPLATE.format(name=name, version=version, replicas=replicas,
                                                extra=extra_manifest),
        "pipeline.py": PIPELINE,
    }
    if realtime:
        files["realtime.py"] = REALTIME_TEMPLATE.format(
            start_delay=start_delay, fail_init=fail_init, tag=tag)
    return zip_bytes(files)


def upload(c: httpx.Client, name: str, archive: bytes, version: str = "1.0.0", ns: str = NS) -> str:
    resp = c.post(f"/v1/namespaces/{ns}/plugins", data={"name": name, "version": version},
                  files={"file": ("plugin.zip", archive, "application/zip")})
    body = resp.json()
    assert resp.status_code == 200 and body["success"], body
    return str(body["plugin_id"])


def deploy(c: httpx.Client, plugin_id: str, ns: str = NS, **params: str) -> dict[str, Any]:
    resp = c.post(f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy", params=params)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def status(c: httpx.Client, plugin_id: str, ns: str = NS) -> dict[str, Any]:
    resp = c.get(f"/v1/namespaces/{ns}/plugins/{plugin_id}/status")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def wait_for(
    c: httpx.Client, plugin_id: str, targets: set[str], timeout: float = 90.0, ns: str = NS,
) -> tuple[dict[str, Any], list[str]]:
    """Poll the status until it is one of `targets`; returns the last body and every status seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = status(c, plugin_id, ns)
        if not seen or seen[-1] != body["status"]:
            seen.append(body["status"])
        if body["status"] in targets:
            return body, seen
        time.sleep(0.02)
    raise AssertionError(f"{plugin_id} never reached {targets}; saw {seen}")


def infer(c: httpx.Client, route: str, inputs: dict[str, Any], parameters: dict[str, Any] | None = None) -> httpx.Response:
    return c.post(route, json={"inputs": inputs, "parameters": parameters or {}})


def kill_replica(replica: str) -> int:
    """SIGKILL the processes of the replica that answers with `"replica": replica` (its socket
    path, named on its command line); how many were signalled. A pid reported by a sandboxed
    plugin is one of its own pid namespace, useless (and dangerous) to os.kill here."""
    killed = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        worker = b"plughost.replica" in argv or b"plughost.replica.spare" in argv  # issue 17
        if worker and replica.encode() in argv:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
    return killed


# realtime.py of a plugin that prints a line per call (log collection across restarts)
PRINTING = """
class Service:
    def __call__(self, inputs, parameters):
        print("called with", inputs.get("word"), flush=True)
        return {"ok": True}


def get_inference_service(**kwargs):
    return Service()
"""
