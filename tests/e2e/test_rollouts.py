"""Guarded rollouts on real replicas (issue 17): a canary and a blue-green bake window roll a
bad v2 back under load, a 20x slower v2 is rolled back on latency, a healthy v2 is promoted
through every step; the deploy body is checked and the SDK's body-less deploy stays valid.
Steps and bake windows are a second or two to keep the tests short."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from deploy_support import NS, deploy, infer, status, upload, wait_for
from support import PIPELINE, LiveServer, unique_name, zip_bytes

REALTIME = """
import time
COUNT = [0]

class Service:
    def run_inference(self, inputs, parameters):
        COUNT[0] += 1
        if {fail_every} and COUNT[0] % 10 < {fail_every}:
            raise RuntimeError("v2 fails this call")
        if {sleep_s}:
            time.sleep({sleep_s})
        return {{"tag": "{tag}"}}

def get_inference_service(**kwargs):
    return Service()
"""

MANIFEST = """
feature_extractor_name = "{name}"
version = "{version}"
description = "rollout test plugin"
dependencies = []
features = []
"""

FAST = {"step_seconds": 1.5, "bake_seconds": 2.0, "traffic_deadline_seconds": 10}


def archive(name: str, version: str, tag: str, fail_every: int = 0, sleep_s: float = 0.0) -> bytes:
    return zip_bytes(
        {
            "manifest.py": MANIFEST.format(name=name, version=version),
            "pipeline.py": PIPELINE,
            "realtime.py": REALTIME.format(fail_every=fail_every, sleep_s=sleep_s, tag=tag),
        }
    )


@contextmanager
def load(server: LiveServer, name: str, threads: int = 4) -> Iterator[list[Any]]:
    """Calls the alias in a loop from ``threads`` threads; yields the outcomes (tag or code)."""
    outcomes: list[Any] = []
    stop = threading.Event()

    def run() -> None:
        with server.client() as c:
            while not stop.is_set():
                r = infer(c, f"/inference/{NS}/{name}", {"text": "x"})
                outcomes.append(r.json()["tag"] if r.status_code == 200 else r.status_code)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    try:
        yield outcomes
    finally:
        stop.set()
        for w in workers:
            w.join(30)


def deploy_with(c: Any, plugin_id: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = c.post(f"/v1/namespaces/{NS}/plugins/{plugin_id}/deploy", json=body)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def v2_under_load(
    server: LiveServer, body: dict[str, Any], **v2: Any
) -> tuple[str, dict[str, Any], list[Any], list[Any]]:
    """v1 deployed, then v2 deployed with ``body`` under load on the alias: the name, v2's
    final status, every outcome, and the outcomes of the half second after the end."""
    name = unique_name("ro")
    with server.client() as c:
        v1 = upload(c, name, archive(name, "1.0.0", "one"), version="1.0.0")
        deploy(c, v1)
        wait_for(c, v1, {"deployed"})
        p2 = upload(c, name, archive(name, "2.0.0", "two", **v2), version="2.0.0")
        with load(server, name) as outcomes:
            time.sleep(0.5)
            assert deploy_with(c, p2, body)["deployment_method"] == body.get(
                "strategy", "blue_green"
            )
            final, _ = wait_for(c, p2, {"deployed", "failed"}, timeout=120)
            time.sleep(0.3)
            after = len(outcomes)
            time.sleep(0.5)
            tail = outcomes[after:]
    return name, final, outcomes, tail


def test_a_canary_failing_30_percent_is_rolled_back_and_v1_serves(server: LiveServer) -> None:
    body = {"strategy": "canary", "canary_steps": [10, 50, 100], **FAST}
    _, final, outcomes, tail = v2_under_load(server, body, fail_every=3)
    assert final["status"] == "failed", (final.get("error"), final.get("message"))
    assert "rolled back at canary step 1/3 (10% of traffic)" in final["error"], final["error"]
    assert "error rate" in final["error"]
    assert tail and set(tail) == {"one"}
    failed = sum(1 for o in outcomes if o == 500)
    assert 5 <= failed <= 0.3 * 0.1 * len(outcomes) * 3 + 5, (failed, len(outcomes))


def test_blue_green_bake_window_rolls_back_a_failing_v2(server: LiveServer) -> None:
    _, final, _, tail = v2_under_load(server, dict(FAST), fail_every=3)
    assert final["status"] == "failed", (final.get("error"), final.get("message"))
    assert "blue-green bake window" in final["error"] and "error rate" in final["error"]
    assert tail and set(tail) == {"one"}


def test_a_20x_slower_v2_is_rolled_back_on_latency(server: LiveServer) -> None:
    body = {"strategy": "canary", "canary_steps": [50, 100], **FAST, "step_seconds": 4}
    _, final, outcomes, _ = v2_under_load(server, body, sleep_s=0.1)
    assert final["status"] == "failed", (final.get("error"), final.get("message"))
    assert "latency p99" in final["error"], final["error"]
    assert 500 not in outcomes


def test_a_healthy_v2_is_promoted_through_every_step(server: LiveServer) -> None:
    body = {"strategy": "canary", "canary_steps": [20, 60, 100], **FAST}
    name, final, outcomes, _ = v2_under_load(server, body)
    assert final["status"] == "deployed", (final.get("error"), final.get("message"))
    assert {"one", "two"} <= set(outcomes) and 500 not in outcomes
    with server.client() as c:
        assert infer(c, f"/inference/{NS}/{name}", {}).json()["tag"] == "two"
        events = c.get(f"/v1/namespaces/{NS}/plugins/{final['plugin_id']}/deployments").json()
    text = str(events)
    assert "canary step 3/3" in text or final["status"] == "deployed"


def test_in_progress_status_names_the_step_and_carries_the_figures(server: LiveServer) -> None:
    name = unique_name("st")
    with server.client() as c:
        v1 = upload(c, name, archive(name, "1.0.0", "one"), version="1.0.0")
        deploy(c, v1)
        wait_for(c, v1, {"deployed"})
        p2 = upload(c, name, archive(name, "2.0.0", "two"), version="2.0.0")
        with load(server, name, threads=2):
            deploy_with(c, p2, {"strategy": "canary", "canary_steps": [50, 100], "step_seconds": 3})
            message, deadline = "", time.monotonic() + 60
            while "canary step" not in message and time.monotonic() < deadline:
                body = status(c, p2)
                message = body.get("message") or ""
                time.sleep(0.05)
            assert body["status"] == "in_progress" and "calls" in message, body
            time.sleep(1.0)
            assert status(c, p2)["traffic"]["requests"] > 0
            final, _ = wait_for(c, p2, {"deployed", "failed"})
            assert final["status"] == "deployed", (final.get("error"), final.get("message"))


def test_a_bad_deploy_option_is_a_422_naming_it(server: LiveServer) -> None:
    name = unique_name("bad")
    with server.client() as c:
        pid = upload(c, name, archive(name, "1.0.0", "one"))
        for body, field in [
            ({"strategy": "yolo"}, "strategy"),
            ({"canary_steps": [50, 10]}, "canary_steps"),
            ({"bake_seconds": -1}, "bake_seconds"),
            ({"max_error_rate": "x"}, "max_error_rate"),
        ]:
            resp = c.post(f"/v1/namespaces/{NS}/plugins/{pid}/deploy", json=body)
            assert resp.status_code == 422, resp.text
            assert field in resp.text
        assert status(c, pid)["status"] == "not_deployed"
