"""The cgroup layer on a live server (issue 28, item 1): each replica runs in a cgroup of
its namespace with a resident-memory limit, a pids limit and a CPU weight, under a parent
whose memory limit caps the namespace's sum.

Checked here with the replicas' processes really killed by the kernel: a replica past its
limit is OOM-killed and the status says so in plain words while a neighbour in another
namespace keeps answering; two replicas of one namespace past its cap: the kernel kills one;
a fork bomb stops at the pids limit (the NPROC rlimit is set far above it here); a plugin
that reserves address space far past its memory limit now deploys and answers;
``/healthz`` names the layer; and the server's cgroups are gone once it stops.
Skipped where this machine's cgroups are not writable (the rlimit is then the layer).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from deploy_support import deploy, infer, status, upload, wait_for
from support import PIPELINE, LiveServer, unique_name, zip_bytes

from plughost.sandbox.cgroup_detect import detect
from plughost.sandbox.cgroups import start_cgroups

pytestmark = pytest.mark.security

NAMESPACE_CAP_MB = 450
PIDS_MAX = 32

MANIFEST = """
feature_extractor_name = "{name}"
version = "1.0.0"
features = []
serve_config = {{"memory_gb": {memory_gb}}}
"""

# reserves 4 GB of address space at load (never touched: what a weights map or an
# allocator's reservation does), holds ``hold_mb`` of touched memory per call
HOLDER = """
import mmap


class Service:
    def __init__(self):
        self.held = []
        self.reserve = mmap.mmap(-1, 4 * 1024 ** 3,
                                 flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.reserve[:4096] = b"x" * 4096

    def run_inference(self, inputs, parameters):
        mb = int(inputs.get("hold_mb") or 0)
        if mb:
            self.held.append(bytearray(mb * 1024 * 1024))
        held = sum(len(b) for b in self.held) // 2 ** 20
        return {"held_mb": held, "reserved_mb": len(self.reserve) // 2 ** 20}


def get_inference_service(**kwargs):
    return Service()
"""

FORK_BOMB = """
import os
import time


class Service:
    def run_inference(self, inputs, parameters):
        children, failures = [], 0
        for _ in range(200):
            try:
                pid = os.fork()
            except OSError:
                failures += 1
                continue
            if pid == 0:
                time.sleep(3)
                os._exit(0)
            children.append(pid)
        for pid in children:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        return {"started": len(children), "failures": failures}


def get_inference_service(**kwargs):
    return Service()
"""


def _writable() -> bool:
    """Whether a server here gets cgroups: the server's own check, its tree removed again."""
    tree = start_cgroups("auto", unique_name("probe"), pids_max=8, cpu_weight=100)
    if tree is None:
        return False
    tree.close()
    return True


def _server_cgroups(pid: int) -> list[Path]:
    found = detect()
    if found is None:
        return []
    return [p for base in found[1].values() for p in base.glob(f"plughost-*-{pid}")]


@pytest.fixture(scope="module")
def cg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if not _writable():
        pytest.skip("no writable cgroups on this machine: the rlimit is the memory layer")
    srv = LiveServer(
        home=tmp_path_factory.mktemp("home-cgroups"),
        extra_env={
            "PLUGHOST_UNSAFE_SKIP_SCAN": "1",  # the fork bomb: the sandbox alone must hold
            "PLUGHOST_CGROUP_NAMESPACE_MEMORY_MB": str(NAMESPACE_CAP_MB),
            "PLUGHOST_CGROUP_PIDS_MAX": str(PIDS_MAX),
            "PLUGHOST_SANDBOX_MAX_PROCESSES": "4096",  # NPROC far above the pids limit
            "PLUGHOST_REPLICA_POOL": "0",
        },
    )
    srv.start()
    assert srv.proc is not None
    pid = srv.proc.pid
    try:
        yield srv
    finally:
        srv.stop()
        left = _server_cgroups(pid)
        assert left == [], f"the server left its cgroups: {left}"


def _namespace(server: LiveServer) -> str:
    done = server.cli("namespaces", "create", "cg", "--id", unique_name("nscg"), "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["namespace_id"])


def _deploy(c: httpx.Client, ns: str, code: str, memory_gb: float) -> tuple[str, str]:
    name = unique_name("cg")
    files = {
        "manifest.py": MANIFEST.format(name=name, memory_gb=memory_gb),
        "pipeline.py": PIPELINE,
        "realtime.py": code,
    }
    pid = upload(c, name, zip_bytes(files), ns=ns)
    deploy(c, pid, ns=ns)
    body, _ = wait_for(c, pid, {"deployed", "failed"}, ns=ns)
    assert body["status"] == "deployed", body
    return pid, f"/inference/{ns}/{name}"


def _message_with(c: httpx.Client, pid: str, ns: str, words: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    message = ""
    while time.monotonic() < deadline:
        message = str(status(c, pid, ns=ns).get("message") or "")
        if words in message:
            return message
        time.sleep(0.5)
    return message


def test_healthz_names_the_cgroup_layer(cg_server: LiveServer) -> None:
    with cg_server.anonymous() as c:
        sandbox = c.get("/healthz").json()["sandbox"]
    version = (detect() or ("", {}))[0]
    assert sandbox["memory_limit"] == f"cgroup-{version}", sandbox


def test_a_replica_past_its_limit_is_killed_and_reported_and_a_neighbour_answers(
    cg_server: LiveServer,
) -> None:
    ns_hog, ns_other = _namespace(cg_server), _namespace(cg_server)
    with cg_server.client() as c:
        # with the address-space rlimit (256 MiB) the 4 GB reservation failed at load
        pid, route = _deploy(c, ns_hog, HOLDER, 0.25)
        _, neighbour = _deploy(c, ns_other, HOLDER, 0.25)
        assert infer(c, route, {}).json() == {"held_mb": 0, "reserved_mb": 4096}
        assert infer(c, neighbour, {"hold_mb": 64}).json()["held_mb"] == 64
        r = infer(c, route, {"hold_mb": 400})
        assert r.status_code >= 500, r.text
        message = _message_with(c, pid, ns_hog, "(cgroup")
        assert "killed: past its memory limit of 256 MB (cgroup)" in message, message
        assert infer(c, neighbour, {}).json()["held_mb"] == 64  # same process, untouched
        assert c.get("/healthz").status_code == 200


def test_the_namespace_cap_holds_over_two_replicas(cg_server: LiveServer) -> None:
    ns = _namespace(cg_server)
    with cg_server.client() as c:
        first, first_route = _deploy(c, ns, HOLDER, 0.3)
        second, second_route = _deploy(c, ns, HOLDER, 0.3)
        assert infer(c, first_route, {"hold_mb": 200}).json()["held_mb"] == 200
        infer(c, second_route, {"hold_mb": 250})  # 450+ MB together: past the cap
        words = f"namespace went past its memory cap of {NAMESPACE_CAP_MB} MB"
        deadline = time.monotonic() + 60
        messages: list[str] = []
        while time.monotonic() < deadline:
            messages = [str(status(c, p, ns=ns).get("message") or "") for p in (first, second)]
            if any(words in m for m in messages):
                break
            time.sleep(0.5)
        assert any(words in m for m in messages), messages
        assert c.get("/healthz").status_code == 200


def test_a_fork_bomb_stops_at_the_pids_limit(cg_server: LiveServer) -> None:
    ns = _namespace(cg_server)
    with cg_server.client() as c:
        _, route = _deploy(c, ns, FORK_BOMB, 0.5)
        r = infer(c, route, {})
        assert r.status_code == 200, r.text
        result = r.json()
        assert result["failures"] > 0 and result["started"] < PIDS_MAX, result
        assert c.get("/healthz").status_code == 200


def _procs(folder: Path) -> list[str]:
    try:
        return (folder / "cgroup.procs").read_text().split()
    except OSError:
        return []


def test_a_pool_member_moves_into_the_claiming_namespace_before_it_loads(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if not _writable():
        pytest.skip("no writable cgroups on this machine")
    srv = LiveServer(
        home=tmp_path_factory.mktemp("home-cgroups-pool"),
        extra_env={"PLUGHOST_REPLICA_POOL": "1"},
    ).start()
    assert srv.proc is not None
    server_pid = srv.proc.pid
    try:
        roots = [r for r in _server_cgroups(server_pid) if r.parent.name != "cpu"]
        deadline = time.monotonic() + 60
        waiting: list[Path] = []
        while time.monotonic() < deadline and not waiting:  # a member waits in the pool
            waiting = [m for r in roots for m in (r / "pool").glob("pool-*") if _procs(m)]
            time.sleep(0.2)
        assert waiting, "no pool member in the pool's cgroup"
        members = {m.name for m in waiting}
        ns = _namespace(srv)
        with srv.client() as c:
            _, route = _deploy(c, ns, HOLDER, 2)  # the default memory limit: poolable
            assert infer(c, route, {}).status_code == 200
        replicas = [p for r in roots for p in (r / f"ns-{ns}").glob("p-*") if _procs(p)]
        assert len(replicas) == len(roots), replicas  # one per controller
        assert not any((r / "pool" / name).exists() for r in roots for name in members)
    finally:
        srv.stop()
    assert _server_cgroups(server_pid) == []


def test_a_namespace_quota_sets_its_parent_cgroup_cap(cg_server: LiveServer) -> None:
    ns = _namespace(cg_server)
    with cg_server.client() as c:
        r = c.put(f"/v1/admin/namespaces/{ns}/policy", json={"max_memory_mb": 700})
        assert r.status_code == 200, r.text
        _deploy(c, ns, HOLDER, 0.3)
    assert cg_server.proc is not None
    version = (detect() or ("", {}))[0]
    name = "memory.max" if version == "v2" else "memory.limit_in_bytes"
    caps = [
        int((root / f"ns-{ns}" / name).read_text())
        for root in _server_cgroups(cg_server.proc.pid)
        if (root / f"ns-{ns}" / name).exists()
    ]
    assert caps == [700 * 1024 * 1024], caps  # the quota, not the server's default (450)
