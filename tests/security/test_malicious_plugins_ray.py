"""Malicious plugins on the Ray backend: the Serve replica runs the plugin in the same
sandboxed worker a local replica is, so they must stay contained there too.

A strict-mode server with the upload scanner bypassed and its own local Ray runs a selection
of every family's payloads (escape, secret theft, network, exhaustion, tamper), including the
seven that did harm on Ray before the sandbox applied there (a host secret file read through
/proc, three network clients reaching the host's loopback, deleting the server's home). The
checks are the local suite's (:func:`assert_contained`), with the neighbour's worker and the
release's leftover processes found the Ray way.
"""

from __future__ import annotations

import hashlib
import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sec_support
from payloads_escape import ESCAPE_PAYLOADS
from payloads_exhaust import EXHAUST_PAYLOADS
from payloads_network import NETWORK_PAYLOADS
from payloads_secrets import SECRET_PAYLOADS
from payloads_tamper import TAMPER_PAYLOADS
from sec_servers import Neighbour, Target, deployed_neighbour, server_env, wait_until
from sec_support import Listeners, Payload, healthy, run_case
from support import LiveServer
from test_malicious_plugins import ESCAPED_MARKS, EXPECTED_STAGE, stray_files

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray Serve is not installed"
)

CHOSEN = {
    "escape-os_system", "escape-ctypes_libc_system", "escape-fork_then_execv",
    "escape-setuid_root",
    "secret-read_admin_key", "secret-server_proc_environ", "secret-scan_every_proc_environ",
    "secret-own_environment", "secret-walk_plughost_home", "secret-read_neighbour_plugin_file",
    "network-tcp_connect", "network-urllib_http", "network-http_client", "network-server_api",
    "network-neighbour_replica_socket", "network-abstract_unix_socket",
    "exhaust-memory_one_huge_block", "exhaust-fork_bomb", "exhaust-cpu_spin_in_call",
    "exhaust-memory_at_import",
    "tamper-write_into_home", "tamper-kill_server_by_host_pid", "tamper-append_to_neighbour_code",
    "tamper-write_host_marker", "tamper-kill_neighbour_by_host_pid",
}
ALL = ESCAPE_PAYLOADS + SECRET_PAYLOADS + NETWORK_PAYLOADS + EXHAUST_PAYLOADS + TAMPER_PAYLOADS
PAYLOADS = [p for p in ALL if p.id in CHOSEN]
RAY_ENV = {"PLUGHOST_BACKEND": "ray", "PLUGHOST_RAY_NUM_CPUS": "2",
           "PLUGHOST_REPLICA_START_TIMEOUT_S": "60"}


def _argv(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def ray_worker_of(server_pid: int, release_id: int) -> tuple[int, str, Path]:
    """Host pid of a release's sandboxed worker, its socket, and the plugin folder on the
    host (the package its Serve replica fetched, mounted read-only at /plugin)."""
    needle = f"/r{release_id}-ray.sock".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        argv = _argv(int(proc.name))
        if b"plughost.replica" not in argv or b"bwrap" in argv[0]:
            continue
        sock = argv[argv.index(b"--socket") + 1]
        if not sock.endswith(needle) or not _descends_from(int(proc.name), server_pid):
            continue
        wrapper = _argv(_parent(int(proc.name)))
        folder = Path(wrapper[wrapper.index(b"/plugin") - 1].decode())
        return int(proc.name), sock.decode(), folder
    raise AssertionError(f"no Ray worker for release {release_id}")


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        pid = _parent(pid)
        if pid == ancestor:
            return True
    return False


def ray_release_processes(server_pid: int, release_id: int) -> list[int]:
    """Host pids still running code of a release of this server (its own local Ray's workers
    descend from it): bwrap and the worker carry the socket path on their command line."""
    needle = f"/r{release_id}-ray.sock".encode()
    return [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and any(needle in a for a in _argv(int(p.name)))
            and _descends_from(int(p.name), server_pid)]


def deploy_ray_neighbour(server: LiveServer) -> Neighbour:
    plugin_id, body = deployed_neighbour(server, timeout=180)
    assert server.proc is not None
    pid, sock, folder = ray_worker_of(server.proc.pid, body["release_id"])
    digest = hashlib.sha256((folder / "realtime.py").read_bytes()).hexdigest()
    return Neighbour(plugin_id, body["route_prefix"], folder, pid, sock, digest)


@pytest.fixture(scope="module")
def on_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    # a Ray deploy on a busy 2-core machine can take longer than the local suite's minute
    saved = sec_support.wait_status.__defaults__
    sec_support.wait_status.__defaults__ = (180.0, "ns_default")
    try:
        yield from _on_ray(tmp_path_factory)
    finally:
        sec_support.wait_status.__defaults__ = saved


def _on_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    home = tmp_path_factory.mktemp("sec-ray")
    srv = LiveServer(home=home, extra_env={**server_env(skip_scan=True), **RAY_ENV}).start()
    try:
        srv.key = (home / "admin-key").read_text().strip()
        sandbox = httpx.get(f"{srv.url}/healthz", timeout=10).json()["sandbox"]
        assert all(sandbox["layers"].values()), sandbox
        yield Target(srv, deploy_ray_neighbour(srv))
    finally:
        srv.stop()


def test_every_family_is_covered() -> None:
    assert {p.category for p in PAYLOADS} == {p.category for p in ALL}
    assert len(PAYLOADS) == len(CHOSEN)


def test_ray_replicas_report_every_layer_on_their_node(on_ray: Target) -> None:
    nodes = httpx.get(f"{on_ray.server.url}/healthz", timeout=10).json()["sandbox"]["ray_nodes"]
    assert nodes, "no Ray node reported its sandbox"
    for node in nodes.values():
        assert node["mode"] == "strict" and node["missing"] == [], node
        assert all(node["layers"].values()), node


def test_neighbour_runs_sandboxed_under_bwrap(on_ray: Target) -> None:
    parent = _parent(on_ray.neighbour.host_pid)
    assert b"bwrap" in _argv(parent)[0], _argv(parent)


@pytest.mark.parametrize("payload", PAYLOADS, ids=[p.id for p in PAYLOADS])
def test_payload_is_contained_on_ray(
    payload: Payload, on_ray: Target, marker_dir: Path, listeners: Listeners
) -> None:
    case = f"r{uuid.uuid4().hex[:8]}"
    ctx = on_ray.context(case, marker_dir, listeners)
    outcome = run_case(on_ray.server, payload, f"mal_{case}", ctx)
    texts = "\n".join(outcome.texts)
    for secret in on_ray.secrets():
        assert secret not in texts, f"{payload.id} leaked a secret: {texts[:2000]}"
    assert not any(mark in texts for mark in ESCAPED_MARKS), texts[:2000]
    assert not Path(ctx["marker"]).exists(), f"{payload.id} wrote the host marker"
    assert stray_files(on_ray) == []
    assert listeners.count() == 0, listeners.hits
    assert healthy(on_ray.server), "the server stopped answering"
    neighbour = on_ray.neighbour
    assert wait_until(lambda: neighbour.answers(on_ray.server), 30), "the neighbour went silent"
    digest = hashlib.sha256((neighbour.folder / "realtime.py").read_bytes()).hexdigest()
    assert digest == neighbour.code_hash
    for key, limit in payload.bounds.items():
        if outcome.result is not None and key in outcome.result:
            assert outcome.result[key] <= limit, (key, outcome.result)
    if outcome.release_id is not None:
        server_pid = on_ray.server.proc.pid if on_ray.server.proc else 0
        assert wait_until(lambda: not ray_release_processes(server_pid, outcome.release_id), 20), (
            ray_release_processes(server_pid, outcome.release_id)
        )
    expected = EXPECTED_STAGE.get(payload.id)
    if expected is not None:
        assert outcome.stage in expected, (outcome.stage, texts[:2000])


def test_ray_workers_run_in_a_cgroup_where_cgroups_are_writable(on_ray: Target) -> None:
    """Issue 28: the sandboxed worker of a Ray replica enters a cgroup of its node too."""
    from plughost.sandbox.cgroups import start_cgroups

    probe = start_cgroups("auto", "rayprobe", pids_max=8, cpu_weight=100)
    if probe is None:
        pytest.skip("no writable cgroups on this machine: the rlimit is the memory layer")
    probe.close()
    nodes = httpx.get(f"{on_ray.server.url}/healthz", timeout=10).json()["sandbox"]["ray_nodes"]
    assert nodes, "no Ray node reported its sandbox"
    for node in nodes.values():
        assert node["memory_limit"] == probe.label, node
