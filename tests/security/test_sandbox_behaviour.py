"""The sandbox's behaviour around the payloads: time limits, egress per namespace, manifest
dependencies, and how the modes degrade (auto) or refuse (strict) when a layer is missing."""

from __future__ import annotations

import socket
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from payloads_exhaust import EXHAUST_PAYLOADS
from sec_servers import MAX_PROCESSES, Target, wait_until
from sec_support import NS, Listeners, deploy_files, run_case, upload_raw, wait_status
from support import PIPELINE, LiveServer, zip_bytes

HANG_ON_DEMAND = '''
class Service:
    def __call__(self, inputs, parameters):
        if inputs.get("hang"):
            while True:
                pass
        return {"ok": True}


def get_inference_service(**kwargs):
    return Service()
'''

CONNECT = '''
import socket


class Service:
    def __call__(self, inputs, parameters):
        try:
            with socket.create_connection(("127.0.0.1", PORT), timeout=3):
                return {"connected": True}
        except OSError as exc:
            return {"connected": False, "error": repr(exc)}


def get_inference_service(**kwargs):
    return Service()
'''


def files_for(name: str, realtime: str, dependencies: str = "[]") -> dict[str, str | bytes]:
    manifest = f'feature_extractor_name = "{name}"\nversion = "1.0.0"\n'
    manifest += f"dependencies = {dependencies}\n"
    return {"manifest.py": manifest, "pipeline.py": PIPELINE, "realtime.py": realtime}


def test_a_hung_call_is_killed_and_its_replica_replaced(unscanned: Target) -> None:
    name = f"hang_{uuid.uuid4().hex[:8]}"
    with unscanned.server.client() as c:
        plugin_id, body = deploy_files(c, name, files_for(name, HANG_ON_DEMAND))
        assert body["status"] == "deployed", body
        route = body["route_prefix"]
        hung = c.post(route, json={"inputs": {"hang": True}})
        # the call ends at its deadline (the server's call timeout, 3 s here); its thread
        # cannot be stopped, so once it still runs one call timeout later the replica is
        # killed and replaced
        assert hung.status_code == 504, hung.text
        assert hung.json()["error"]["type"] == "GatewayTimeoutError"
        assert wait_until(lambda: c.post(route, json={"inputs": {}}).status_code == 200, 20)
        assert wait_status(c, plugin_id)["status"] == "deployed"
        assert "still runs" in unscanned.server.logs()
        c.delete(f"/v1/namespaces/{NS}/plugins/{plugin_id}")
    assert unscanned.neighbour.answers(unscanned.server)


def test_processes_are_capped_per_replica(
    unscanned: Target, marker_dir: Path, listeners: Listeners
) -> None:
    payload = next(p for p in EXHAUST_PAYLOADS if p.name == "fork_bomb")
    case = f"f{uuid.uuid4().hex[:8]}"
    ctx = unscanned.context(case, marker_dir, listeners)
    outcome = run_case(unscanned.server, payload, f"mal_{case}", ctx)
    assert outcome.stage == "call_ok", outcome.texts
    assert outcome.result is not None
    assert outcome.result["fork_failures"] is True
    assert outcome.result["processes"] <= MAX_PROCESSES + 1


def test_egress_is_allowed_only_for_configured_namespaces(unscanned: Target) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    accepted: list[str] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted.append("hit")
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    created = unscanned.server.cli("namespaces", "create", "egress", "--id", "ns_egress")
    assert created.returncode == 0, created.stderr
    realtime = CONNECT.replace("PORT", str(listener.getsockname()[1]))
    answers = {}
    try:
        with unscanned.server.client() as c:
            for ns in ("ns_egress", NS):
                name = f"egress_{uuid.uuid4().hex[:8]}"
                plugin_id, body = deploy_files(c, name, files_for(name, realtime), ns=ns)
                assert body["status"] == "deployed", body
                answers[ns] = c.post(body["route_prefix"], json={"inputs": {}}).json()
                c.delete(f"/v1/namespaces/{ns}/plugins/{plugin_id}")
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert answers["ns_egress"] == {"connected": True}, answers
    assert answers[NS]["connected"] is False, answers
    assert accepted == ["hit"]


def test_missing_dependency_fails_the_deployment_naming_it(scanned: Target) -> None:
    name = f"deps_{uuid.uuid4().hex[:8]}"
    deps = '["orjson", "no-such-package-xyz>=1.0", "pydantic_core"]'
    with scanned.server.client() as c:
        plugin_id, body = deploy_files(c, name, files_for(name, HANG_ON_DEMAND, deps))
        c.delete(f"/v1/namespaces/{NS}/plugins/{plugin_id}")
    assert body["status"] == "failed", body
    assert "no-such-package-xyz" in body["error"], body
    assert "orjson" not in body["error"] and "pydantic_core" not in body["error"], body


def test_dependencies_match_across_spellings(scanned: Target) -> None:
    name = f"deps_{uuid.uuid4().hex[:8]}"
    deps = '["PyYAML", "pydantic-core", "typing_extensions>=4", "orjson"]'
    with scanned.server.client() as c:
        plugin_id, body = deploy_files(c, name, files_for(name, HANG_ON_DEMAND, deps))
        c.delete(f"/v1/namespaces/{NS}/plugins/{plugin_id}")
    assert body["status"] == "deployed", body


def _start(tmp_path: Path, **env: str) -> LiveServer:
    return LiveServer(home=tmp_path, extra_env=env)


def test_strict_mode_refuses_to_start_without_bubblewrap(tmp_path: Path) -> None:
    srv = _start(tmp_path, PLUGHOST_SANDBOX="strict", PLUGHOST_SANDBOX_BWRAP="/nonexistent/bwrap")
    with pytest.raises(RuntimeError, match="server exited early"):
        srv.start(timeout=30)
    assert "PLUGHOST_SANDBOX=strict" in srv.logs()
    assert "bwrap" in srv.logs()


def test_auto_mode_runs_with_the_remaining_layers_and_says_so(tmp_path: Path) -> None:
    srv = _start(tmp_path, PLUGHOST_SANDBOX="auto", PLUGHOST_SANDBOX_BWRAP="/nonexistent/bwrap")
    srv.start()
    try:
        sandbox = httpx.get(f"{srv.url}/healthz", timeout=10).json()["sandbox"]
        assert sandbox["mode"] == "auto"
        assert sandbox["layers"]["bwrap"] is False and sandbox["layers"]["netns"] is False
        assert sandbox["layers"]["seccomp"] is True and sandbox["layers"]["rlimits"] is True
        assert "layer 'bwrap' is NOT available" in srv.logs()
        name = f"degraded_{uuid.uuid4().hex[:8]}"
        with srv.client() as c:
            _, body = deploy_files(c, name, files_for(name, HANG_ON_DEMAND))
            assert body["status"] == "deployed", body
            assert c.post(body["route_prefix"], json={"inputs": {}}).json() == {"ok": True}
    finally:
        srv.stop()


def test_off_mode_is_reported(tmp_path: Path) -> None:
    srv = _start(tmp_path, PLUGHOST_SANDBOX="off").start()
    try:
        sandbox = httpx.get(f"{srv.url}/healthz", timeout=10).json()["sandbox"]
        assert sandbox["mode"] == "off" and not any(sandbox["layers"].values())
        assert "SANDBOX OFF" in srv.logs()
    finally:
        srv.stop()


def test_manifest_reader_runs_sandboxed(unscanned: Target) -> None:
    name = f"mani_{uuid.uuid4().hex[:8]}"
    manifest = (
        "import os\n"
        f'feature_extractor_name = "{name}"\n'
        'version = "1.0.0"\n'
        "with open('/proc/net/dev') as f:\n"
        "    devices = f.read().count(':')\n"
        "description = 'uid=%d net=%d cwd=%s' % (os.getuid(), devices, os.getcwd())\n"
    )
    files = {"manifest.py": manifest, "pipeline.py": PIPELINE}
    with unscanned.server.client() as c:
        up = upload_raw(c, name, zip_bytes(files))
        assert up["success"], up
        got = c.get(f"/v1/namespaces/{NS}/plugins/{up['plugin_id']}").json()
        c.delete(f"/v1/namespaces/{NS}/plugins/{up['plugin_id']}")
    uid, net, cwd = (part.split("=", 1)[1] for part in got["plugin"]["manifest"]["description"].split())
    assert int(uid) >= 1_900_000_000
    assert net == "1"  # the loopback device only
    assert cwd == "/plugin"
