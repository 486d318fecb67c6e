"""Autoscaling on the local backend (issue 17): a plugin with ``min_replicas: 1``,
``max_replicas: 3`` goes 1 -> N -> 1 under rising then falling load, and no call fails.
Small delays in serve_config keep it short. The restart count of /metrics counts only
replicas that ended unasked: none while the autoscaler adds and retires, one for a kill."""

from __future__ import annotations

import threading
import time
from typing import Any

from deploy_support import (
    NS,
    deploy,
    infer,
    kill_replica,
    plugin_archive,
    status,
    upload,
    wait_for,
)
from prometheus_client.parser import text_string_to_metric_families
from support import PIPELINE, LiveServer, unique_name, zip_bytes

REALTIME = """
import time

class Service:
    def run_inference(self, inputs, parameters):
        time.sleep(0.05)
        return {"ok": True}

def get_inference_service(**kwargs):
    return Service()
"""

MANIFEST = """
feature_extractor_name = "{name}"
version = "1.0.0"
features = []
serve_config = {{"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 1,
                "upscale_delay_s": 0.5, "downscale_delay_s": 1.5}}
"""


def restarts(c: Any, name: str) -> float:
    """The replica restarts /metrics reports for the plugin ``name``."""
    text = c.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "plughost_deployment_replica_restarts_total"
                and sample.labels.get("plugin") == name
            ):
                return float(sample.value)
    raise AssertionError(f"no restart count for {name}")


def test_replicas_follow_the_load_up_and_back_down_with_no_failed_call(
    server: LiveServer,
) -> None:
    name = unique_name("scale")
    archive = zip_bytes(
        {
            "manifest.py": MANIFEST.format(name=name),
            "pipeline.py": PIPELINE,
            "realtime.py": REALTIME,
        }
    )
    codes: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with server.client() as lc:
            while not stop.is_set():
                codes.append(infer(lc, f"/inference/{NS}/{name}", {}).status_code)

    with server.client() as c:
        pid = upload(c, name, archive)
        deploy(c, pid)
        body, _ = wait_for(c, pid, {"deployed"})
        assert body["replicas"] == {"ready": 1, "starting": 0, "target": 1}
        threads = [threading.Thread(target=load) for _ in range(6)]
        for t in threads:
            t.start()
        peak: dict[str, Any] = {}
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                peak = status(c, pid)["replicas"]
                if peak["ready"] >= 3:
                    break
                time.sleep(0.1)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert peak["ready"] >= 3, peak
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = status(c, pid)["replicas"]
            if now == {"ready": 1, "starting": 0, "target": 1}:
                break
            time.sleep(0.1)
        assert now == {"ready": 1, "starting": 0, "target": 1}, now
        assert infer(c, f"/inference/{NS}/{name}", {}).status_code == 200
        # replicas the autoscaler added and retired are not restarts
        assert restarts(c, name) == 0
    assert codes and set(codes) == {200}, {c: codes.count(c) for c in set(codes)}


def test_a_killed_replica_is_one_restart_and_the_status_says_how_it_ended(
    server: LiveServer,
) -> None:
    name = unique_name("crash")
    route = f"/inference/{NS}/{name}"
    with server.client() as c:
        pid = upload(c, name, plugin_archive(name))
        deploy(c, pid)
        wait_for(c, pid, {"deployed"})
        replica = infer(c, route, {}).json()["replica"]
        assert kill_replica(replica) >= 1
        deadline = time.monotonic() + 30
        body = status(c, pid)
        while time.monotonic() < deadline:
            body = status(c, pid)
            if body["replicas"]["ready"] == 1 and "replaced" in body["message"]:
                break
            time.sleep(0.1)
        assert "a replica was replaced" in body["message"], body
        assert "killed by SIGKILL" in body["message"], body["message"]
        assert infer(c, route, {}).json()["replica"] != replica
        assert restarts(c, name) == 1
