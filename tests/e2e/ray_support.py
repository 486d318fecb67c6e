"""Test support for the Ray Serve backend: which backends to test, a Ray head for servers that
join a cluster, and a probe that looks at (and plants applications in) that cluster."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from support import free_port

RAY_AVAILABLE = importlib.util.find_spec("ray") is not None and (
    importlib.util.find_spec("ray.serve") is not None
)
DB_KINDS = [k for k in os.environ.get("PLUGHOST_TEST_DBS", "sqlite,postgres").split(",") if k]
# a live server's database where PostgreSQL would change nothing (tests/e2e/conftest.py)
E2E_DB_KINDS = ["sqlite"] if "sqlite" in DB_KINDS else DB_KINDS[:1]
TEST_BACKENDS = [b for b in os.environ.get("PLUGHOST_TEST_BACKENDS", "local,ray").split(",") if b]
RAY_SKIP_REASON = "Ray Serve is not installed (pip install 'plughost[ray]')"
# A cluster started with `ray start` uses token auth; a driver given an explicit address
# authenticates only when told to (the token itself is in ~/.ray/auth_token).
JOIN_ENV = {"RAY_AUTH_MODE": "token"}


def ray_server_env(address: str = "") -> dict[str, str]:
    """Server environment for the Ray backend: its own local Ray, or joining `address`."""
    env = {"PLUGHOST_BACKEND": "ray", "PLUGHOST_RAY_NUM_CPUS": "2"}
    if address:
        env.update(PLUGHOST_RAY_ADDRESS=address, **JOIN_ENV)
    return env


@dataclass
class RayHead:
    """`ray start --head --block` in its own session; stopped by the ids of that session's
    processes (never `ray stop`, which would end every Ray on the machine)."""

    log_path: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> RayHead:
        self.port = free_port()
        ray_cli = Path(sys.executable).with_name("ray")
        cmd = [
            str(ray_cli),
            "start",
            "--head",
            "--block",
            f"--port={self.port}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ]
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self.env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start failed:\n{self.logs()}")
            if "Ray runtime started" in self.logs():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"ray head not up within {timeout} s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _session_pids(self) -> list[int]:
        if self.proc is None:
            return []
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[3]) == self.proc.pid:  # field 6 of stat: the session id
                pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        if self.proc is None:
            return
        members = self._session_pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its children
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for pid in [*members, *self._session_pids()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.wait(10)


PROBE = r"""
import json, logging, sys, time
import ray
from ray import serve

ray.init(address=sys.argv[1], logging_level=logging.ERROR, log_to_driver=False)
if sys.argv[2] == "plant":
    @serve.deployment(name="ghost", ray_actor_options={"num_cpus": 0.05})
    def ghost(body):
        return body
    serve.run(ghost.bind(), name=sys.argv[3], route_prefix=None)
apps = {name: str(getattr(a.status, "value", a.status))
        for name, a in serve.status().applications.items()}
print("PROBE " + json.dumps(apps))
"""


def serve_apps(address: str, plant: str = "") -> dict[str, str]:
    """The Serve applications of the cluster at `address` (after planting app `plant`)."""
    args = [sys.executable, "-c", PROBE, address, "plant" if plant else "list", plant]
    out = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **JOIN_ENV},
    )
    for line in out.stdout.splitlines():
        if line.startswith("PROBE "):
            return dict(json.loads(line[6:]))
    raise RuntimeError(f"probe failed:\n{out.stdout}\n{out.stderr}")
