"""The local backend's replica pool (``PLUGHOST_REPLICA_POOL``): sandboxed replica processes
started before any release, which a deploy loads its plugin into.

A member, before its claim, sees an empty plugin folder and an empty models folder, runs
under a sandbox uid and holds no release's environment (read here through ``/proc``); a
deploy's replica is a claimed member (its socket is the member's) that sees its own files
and its namespace's models; the pool refills; a release the pool cannot serve, an empty
pool and a disabled pool all start replicas the usual way; a stopped server leaves no
member and no slot behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_support import NS, deploy, infer, status, upload, wait_for
from support import PIPELINE, LiveServer, unique_name, zip_bytes

from plughost.backends.local.registry import socket_folder

# what the plugin sees once loaded: its socket (a pool member's socket is named pool-*),
# the plugin folder, the models folder, and its environment's names
REALTIME = """
import os
import sys
from pathlib import Path

SOCKET = sys.argv[sys.argv.index("--socket") + 1]


def listing(path):
    folder = Path(path)
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else None


def environment():
    return sorted(os.environ)


class Service:
    def run_inference(self, inputs, parameters):
        return {
            "socket": SOCKET,
            "plugin": listing("/plugin"),
            "models": listing("/plughost/models"),
            "env": environment(),
        }


def get_inference_service(**kwargs):
    print("loaded from", sorted(p.name for p in Path("/plugin").glob("*_marker.txt")), flush=True)
    return Service()
"""

MANIFEST = """
feature_extractor_name = "{name}"
version = "1.0.0"
features = []
serve_config = {serve_config}
"""


def archive(name: str, marker: str, serve_config: str = "{}") -> bytes:
    return zip_bytes({
        "manifest.py": MANIFEST.format(name=name, serve_config=serve_config),
        "pipeline.py": PIPELINE,
        "realtime.py": REALTIME,
        f"{marker}.txt": marker,
    })


def members(server: LiveServer) -> dict[int, str]:
    """The pool members' Python processes of this server (inside bubblewrap): pid ->
    socket path. A claimed member keeps its command line, so this includes claimed ones."""
    folder = f"{socket_folder(server.home.resolve())}/pool-"
    found: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0")]
        except OSError:
            continue
        if "--claim-fd" not in argv or argv[1:3] != ["-I", "-m"]:
            continue  # not a member, or its bubblewrap wrapper
        socket = argv[argv.index("--socket") + 1]
        if socket.startswith(folder):
            found[int(proc.name)] = socket
    return found


def waiting(server: LiveServer, claimed: set[str], count: int) -> dict[int, str]:
    """The members not claimed (their sockets not in ``claimed``), once there are ``count``."""
    deadline = time.monotonic() + 30
    found: dict[int, str] = {}
    while time.monotonic() < deadline:
        found = {pid: s for pid, s in members(server).items() if s not in claimed}
        if len(found) == count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"expected {count} waiting pool members, found {found}")


def seen_before_claim(pid: int) -> dict[str, Any]:
    """What a waiting member sees (its root, through /proc), its uid and environment."""
    root = Path(f"/proc/{pid}/root")
    uid = next(
        int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("Uid:")
    )
    env = [i.split(b"=", 1)[0].decode() for i in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if i]
    models = root / "plughost" / "models"
    return {
        "plugin": sorted(p.name for p in (root / "plugin").iterdir()),
        "models": sorted(p.name for p in models.iterdir()) if models.is_dir() else None,
        "uid": uid,
        "env": env,
    }


def settled(pid: int) -> dict[str, Any]:
    """What a waiting member sees once it has entered the in-process layers (it drops to a
    sandbox uid after its imports)."""
    deadline = time.monotonic() + 20
    seen = seen_before_claim(pid)
    while seen["uid"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = seen_before_claim(pid)
    return seen


PLUGIN_IDS: dict[str, str] = {}  # name -> plugin id, of the plugins deployed here


def deployed_route(c: Any, name: str, body: bytes) -> str:
    pid = PLUGIN_IDS[name] = upload(c, name, body)
    deploy(c, pid)
    final, _ = wait_for(c, pid, {"deployed", "failed"})
    assert final["status"] == "deployed", final
    return f"/inference/{NS}/{name}"


def log_lines(c: Any, name: str, needed: str) -> list[str]:
    """The plugin's log lines, once one holds ``needed`` (or after 15 s)."""
    pid = PLUGIN_IDS[name]
    deadline = time.monotonic() + 15
    while True:
        resp = c.get(f"/v1/namespaces/{NS}/plugins/{pid}/logs")
        assert resp.status_code == 200, resp.text
        lines = [line["line"] for line in resp.json()["lines"]]
        if any(needed in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def answer(c: Any, route: str) -> dict[str, Any]:
    resp = infer(c, route, {"text": "hi"})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def result(body: dict[str, Any]) -> dict[str, Any]:
    return dict(body.get("result", body))


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(home=tmp_path_factory.mktemp("pool"), extra_env={"PLUGHOST_REPLICA_POOL": "2"})
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_a_deploy_claims_a_member_that_saw_nothing_before_and_the_pool_refills(
    pooled: LiveServer,
) -> None:
    before = waiting(pooled, set(), 2)
    for pid in before:
        seen = settled(pid)
        assert seen["plugin"] == [], seen
        assert seen["models"] in ([], None), seen
        assert seen["uid"] != 0, seen
        assert "PLUGHOST_MODELS_DIR" not in seen["env"], seen
    with pooled.client() as c:
        name = unique_name("pooled")
        got = result(answer(c, deployed_route(c, name, archive(name, "first_marker"))))
        assert got["socket"] in before.values(), got  # the replica is a claimed member
        assert "first_marker.txt" in got["plugin"] and "realtime.py" in got["plugin"], got
        assert got["models"] is not None and "index.json" in got["models"], got
        assert "PLUGHOST_MODELS_DIR" in got["env"], got
        claimed = {got["socket"]}
        after = waiting(pooled, claimed, 2)  # refilled: a new member beside the one left
        assert set(after) != set(before)
        # a second plugin claims another member, which never held the first one's files
        other = unique_name("pooled")
        got2 = result(answer(c, deployed_route(c, other, archive(other, "second_marker"))))
        assert got2["socket"] in after.values() and got2["socket"] not in claimed, got2
        assert "second_marker.txt" in got2["plugin"] and "first_marker.txt" not in got2["plugin"]
        # a third claims a member started after the first claim (the refill)
        waiting(pooled, claimed | {got2["socket"]}, 2)
        third = unique_name("pooled")
        got3 = result(answer(c, deployed_route(c, third, archive(third, "third_marker"))))
        assert "/pool-" in got3["socket"] and got3["socket"] not in before.values(), got3
        # each claimed member's output goes to its own release's log, never another's
        markers = {name: "first_marker", other: "second_marker", third: "third_marker"}
        for plugin, own in markers.items():
            lines = log_lines(c, plugin, own)
            assert any(own in line for line in lines), (own, lines)
            for foreign in set(markers.values()) - {own}:
                assert not any(foreign in line for line in lines), (own, lines)


def test_a_release_the_pool_cannot_serve_starts_the_usual_way(pooled: LiveServer) -> None:
    deadline = time.monotonic() + 30
    while len(waiting_now(pooled)) != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(waiting_now(pooled)) == 2  # members were there to claim
    pool_sockets = set(members(pooled).values())
    with pooled.client() as c:
        name = unique_name("ownlimit")
        # another memory limit than the members' (the default) cannot be given by the pool
        body = archive(name, "limit_marker", serve_config='{"memory_gb": 1.5}')
        got = result(answer(c, deployed_route(c, name, body)))
        assert got["socket"] not in pool_sockets and "/pool-" not in got["socket"], got
        assert "limit_marker.txt" in got["plugin"]


def waiting_now(server: LiveServer) -> dict[int, str]:
    """Members whose plugin folder is still empty (not claimed)."""
    out = {}
    for pid, socket in members(server).items():
        try:
            if not any(Path(f"/proc/{pid}/root/plugin").iterdir()):
                out[pid] = socket
        except OSError:
            continue
    return out


def test_an_empty_pool_falls_back_to_normal_starts(tmp_path: Path) -> None:
    srv = LiveServer(home=tmp_path / "one", extra_env={"PLUGHOST_REPLICA_POOL": "1"})
    srv.start()
    try:
        waiting(srv, set(), 1)
        with srv.client() as c:
            name = unique_name("three")
            body = archive(name, "three_marker", serve_config='{"num_replicas": 3}')
            route = deployed_route(c, name, body)
            sockets = {result(answer(c, route))["socket"] for _ in range(12)}
        assert len(sockets) == 3, sockets
        pooled_ones = [s for s in sockets if "/pool-" in s]
        assert len(pooled_ones) == 1, sockets  # one member, two cold starts
    finally:
        srv.stop()
    assert members(srv) == {}
    assert not any((srv.home / "pool").iterdir()) if (srv.home / "pool").exists() else True


def test_a_disabled_pool_starts_no_member_and_deploys_cold(tmp_path: Path) -> None:
    srv = LiveServer(home=tmp_path / "off", extra_env={"PLUGHOST_REPLICA_POOL": "0"})
    srv.start()
    try:
        with srv.client() as c:
            name = unique_name("cold")
            got = result(answer(c, deployed_route(c, name, archive(name, "cold_marker"))))
            assert "/pool-" not in got["socket"], got
            assert members(srv) == {}
            assert status(c, upload(c, unique_name("idle"), archive("x", "idle")))  # still serves
    finally:
        srv.stop()


def test_a_stopped_server_leaves_no_member_and_no_slot(tmp_path: Path) -> None:
    srv = LiveServer(home=tmp_path / "stop", extra_env={"PLUGHOST_REPLICA_POOL": "2"})
    srv.start()
    try:
        waiting(srv, set(), 2)
        with srv.client() as c:
            name = unique_name("gone")
            deployed_route(c, name, archive(name, "gone_marker"))
    finally:
        srv.stop()
    deadline = time.monotonic() + 10
    while members(srv) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert members(srv) == {}
    slots = list((srv.home / "pool").iterdir()) if (srv.home / "pool").exists() else []
    assert slots == []


def test_an_undeployed_pooled_replica_ends_and_its_slot_goes(pooled: LiveServer) -> None:
    with pooled.client() as c:
        name = unique_name("undeployed")
        got = result(answer(c, deployed_route(c, name, archive(name, "undeploy_marker"))))
        socket = got["socket"]
        assert "/pool-" in socket, got
        slot_name = Path(socket).stem
        resp = c.post(f"/v1/namespaces/{NS}/plugins/{PLUGIN_IDS[name]}/undeploy")
        assert resp.status_code == 200, resp.text
    deadline = time.monotonic() + 30
    while socket in members(pooled).values() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert socket not in members(pooled).values()
    assert not list((pooled.home / "pool").glob(f"*/{slot_name}"))
