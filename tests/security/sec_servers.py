"""The security suite's servers: strict-mode settings, the neighbour plugin each server runs
beside the payloads, and what payloads are told about their target. Test modules import
these from here (tests/security/conftest.py holds only the fixtures: a test module's
`from conftest import` would find whichever conftest of the run was imported last)."""

from __future__ import annotations

import hashlib
import json
import sysconfig
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sec_support import NS, Listeners, upload_raw, wait_status
from support import PIPELINE, LiveServer, zip_bytes

import plughost

CANARY = "canary-" + uuid.uuid4().hex
NEIGHBOUR_CANARY = "neighbour-secret-" + uuid.uuid4().hex
MAX_PROCESSES = 48

NEIGHBOUR_REALTIME = '''
class Service:
    def __call__(self, inputs, parameters):
        return {"neighbour": "ok"}


def get_inference_service(**kwargs):
    return Service()
'''


def server_env(skip_scan: bool) -> dict[str, str]:
    env = {
        "PLUGHOST_BOOTSTRAP_KEY": "",  # generated, so $PLUGHOST_HOME/admin-key exists
        "PLUGHOST_SANDBOX": "strict",
        "PLUGHOST_SANDBOX_EGRESS_NAMESPACES": "ns_egress",
        "PLUGHOST_SANDBOX_MAX_PROCESSES": str(MAX_PROCESSES),
        "PLUGHOST_REPLICA_CALL_TIMEOUT_S": "3",
        "PLUGHOST_REPLICA_START_TIMEOUT_S": "8",
        "PLUGHOST_MANIFEST_TIMEOUT_S": "4",
        "PLUGHOST_DRAIN_TIMEOUT_S": "1",
        "SECURITY_CANARY": CANARY,
    }
    if skip_scan:
        env["PLUGHOST_UNSAFE_SKIP_SCAN"] = "1"
    return env


@dataclass
class Neighbour:
    plugin_id: str
    route: str
    folder: Path
    host_pid: int
    socket: str
    code_hash: str

    def answers(self, server: LiveServer) -> bool:
        with server.client() as c:
            resp = c.post(self.route, json={"inputs": {}, "parameters": {}})
        return resp.status_code == 200 and resp.json().get("neighbour") == "ok"


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        pid = _parent(pid)
        if pid == ancestor:
            return True
    return False


def _recorded_socket(server: LiveServer, release_id: int) -> bytes | None:
    """The socket of a replica of the release as the server's replica registry records it
    (a replica claimed from the replica pool is named by its pool slot, not its release)."""
    for path in (server.home / "replicas").glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("release_id") == release_id:
            return str(record["socket_path"]).encode()
    return None


def _worker_of(server: LiveServer, release_id: int) -> tuple[int, str]:
    """Host pid (the Python worker, not bwrap) and socket path of a release's replica."""
    assert server.proc is not None
    marker = _recorded_socket(server, release_id) or f"/r{release_id}-".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        worker = b"plughost.replica" in argv or b"plughost.replica.spare" in argv  # pooled
        if not worker or "bwrap" in argv[0].decode(errors="replace"):
            continue
        sock = argv[argv.index(b"--socket") + 1]
        if marker in sock and _descends_from(int(proc.name), server.proc.pid):
            return int(proc.name), sock.decode()
    raise AssertionError(f"no worker process for release {release_id}")


def deployed_neighbour(server: LiveServer, timeout: float = 60.0) -> tuple[str, dict[str, Any]]:
    """Upload and deploy the neighbour plugin (its secret file beside its code); its plugin id
    and its deployed status."""
    files = {
        "manifest.py": 'feature_extractor_name = "neighbour"\nversion = "1.0.0"\n',
        "pipeline.py": PIPELINE,
        "realtime.py": NEIGHBOUR_REALTIME,
        "secret.txt": NEIGHBOUR_CANARY,
    }
    with server.client() as c:
        up = upload_raw(c, "neighbour", zip_bytes(files))
        assert up["success"], up
        plugin_id = up["plugin_id"]
        c.post(f"/v1/namespaces/{NS}/plugins/{plugin_id}/deploy").raise_for_status()
        body = wait_status(c, plugin_id, timeout=timeout)
        assert body["status"] == "deployed", body
    return plugin_id, body


def deploy_neighbour(server: LiveServer) -> Neighbour:
    plugin_id, body = deployed_neighbour(server)
    folder = server.home / "deployments" / f"r{body['release_id']}"
    pid, sock = _worker_of(server, body["release_id"])
    digest = hashlib.sha256((folder / "realtime.py").read_bytes()).hexdigest()
    return Neighbour(plugin_id, body["route_prefix"], folder, pid, sock, digest)


def start_server(home: Path, skip_scan: bool) -> LiveServer:
    srv = LiveServer(home=home, extra_env=server_env(skip_scan)).start()
    srv.key = (home / "admin-key").read_text().strip()
    return srv


@dataclass
class Target:
    """A live server with its neighbour plugin, and what payloads are told about it."""

    server: LiveServer
    neighbour: Neighbour

    def context(self, case: str, marker_dir: Path, listeners: Listeners) -> dict[str, Any]:
        home = self.server.home
        assert self.server.proc is not None
        return {
            "case": case,
            "marker": str(marker_dir / case),
            "evidence": f"/tmp/pwned_{case}",
            "cmd": f"echo pwned > /tmp/pwned_{case}; touch {marker_dir / case}",
            "home": str(home),
            "admin_key": str(home / "admin-key"),
            "db": str(home / "plughost.db"),
            "neighbour_dir": str(self.neighbour.folder),
            "neighbour_secret": str(self.neighbour.folder / "secret.txt"),
            "neighbour_socket": self.neighbour.socket,
            "neighbour_pid": self.neighbour.host_pid,
            "server_pid": self.server.proc.pid,
            "server_port": self.server.port,
            "tcp_port": listeners.tcp_port,
            "udp_port": listeners.udp_port,
            "unix_path": listeners.unix_path,
            "abstract_name": listeners.abstract_name,
            "site_packages": sysconfig.get_paths()["purelib"],
            "plughost_dir": str(Path(plughost.__file__).resolve().parent),
        }

    def secrets(self) -> list[str]:
        return [self.server.key, CANARY, NEIGHBOUR_CANARY, "SQLite format 3"]


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())
