"""Issue 28, the logs surface on the Ray backend: a Ray replica's worker output reaches the
server over the replica's relay; terminal control printed by the plugin comes back escaped
from the logs API, and a 10 MB line is cut without ending the server's follow of the worker
(the lines after it still arrive)."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from logs_streams_support import RAW_CONTROL, TERM_REALTIME, plugin_zip
from sec_support import NS, upload_raw, wait_status
from support import LiveServer, unique_name

RAY_AVAILABLE = importlib.util.find_spec("ray") is not None and (
    importlib.util.find_spec("ray.serve") is not None
)
pytestmark = pytest.mark.skipif(not RAY_AVAILABLE, reason="Ray Serve is not installed")
LINE_MAX = 16384


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {
        "PLUGHOST_BACKEND": "ray",
        "PLUGHOST_RAY_NUM_CPUS": "2",
        "PLUGHOST_LOG_LINE_MAX_BYTES": str(LINE_MAX),
    }
    live = LiveServer(home=tmp_path_factory.mktemp("ray-logs-surface"), extra_env=env)
    live.start(timeout=180)
    try:
        yield live
    finally:
        live.stop(timeout=60)


def _lines(c: httpx.Client, plugin_id: str, needed: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while True:
        resp = c.get(f"/v1/namespaces/{NS}/plugins/{plugin_id}/logs", params={"limit": 5000})
        assert resp.status_code == 200, resp.text
        lines: list[dict[str, Any]] = resp.json()["lines"]
        if any(needed in line["line"] for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.3)


def test_ray_replica_output_is_escaped_and_cut(ray_server: LiveServer) -> None:
    with ray_server.client() as c:
        up = upload_raw(c, unique_name("rayterm"), plugin_zip("rayterm", TERM_REALTIME))
        assert up["success"], up
        plugin_id = up["plugin_id"]
        c.post(f"/v1/namespaces/{NS}/plugins/{plugin_id}/deploy").raise_for_status()
        status = wait_status(c, plugin_id, timeout=240)
        assert status["status"] == "deployed", status
        for inputs in ({"hostile": True}, {"huge": True}):
            resp = c.post(status["route_prefix"], json={"inputs": inputs, "parameters": {}})
            assert resp.status_code == 200, resp.text
        lines = _lines(c, plugin_id, "after huge")
    assert any(line["line"] == "after huge" for line in lines), "the follow stopped"
    hostile = [line for line in lines if "pwned title" in line["line"]]
    assert {line["stream"] for line in hostile} == {"stdout", "stderr", "log"}, hostile
    assert all("\\x1b[2J\\x1b[Hmid\\x1b]0;pwned title\\x07" in line["line"] for line in hostile)
    assert all(not RAW_CONTROL.search(line["line"]) for line in lines)
    assert all(len(line["line"].encode()) <= LINE_MAX + 40 for line in lines)
    assert any(line["line"].endswith(" bytes cut]") for line in lines)
