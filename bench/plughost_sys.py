"""Run a `plughost serve` for the benchmark and drive it over HTTP (upload, deploy, status)."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

NS = "ns_default"
REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "plugins"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def zip_plugin(folder: Path) -> bytes:
    """The plugin folder as a zip archive (no caches)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
                zf.write(p, p.relative_to(folder).as_posix())
    return buf.getvalue()


class BenchError(RuntimeError):
    """A step of the benchmark could not be carried out."""


@dataclass
class PlughostServer:
    """`python -m plughost serve` in its own session, with its own home and key."""

    home: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    key: str = field(default_factory=lambda: "ph_bench_" + uuid.uuid4().hex)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _client: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def auth_header(self) -> str:
        return f"Authorization: Bearer {self.key}"

    def start(self, timeout: float = 60.0) -> PlughostServer:
        self.port = self.port or free_port()
        self.home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGHOST_")}
        env.update(PLUGHOST_HOME=str(self.home), PLUGHOST_BOOTSTRAP_KEY=self.key)
        # the restart runs SIGKILL servers: a replica none adopts (a spare, one still
        # starting) ends itself after a minute instead of ten, and so never weighs on the
        # runs after it
        env["PLUGHOST_REPLICA_ORPHAN_TIMEOUT_S"] = "60"
        env.update(self.extra_env)
        self.log_path = self.home / f"server-{self.port}.log"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plughost",
                "serve",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.home,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"plughost exited at start:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise BenchError(f"plughost did not become healthy in {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    # -- API --------------------------------------------------------------------------------
    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=120
            )
        return self._client

    def upload(self, name: str, archive: bytes, version: str = "1.0.0") -> str:
        resp = self.client.post(
            f"/v1/namespaces/{NS}/plugins",
            data={"name": name, "version": version},
            files={"file": ("plugin.zip", archive, "application/zip")},
        )
        body = resp.json()
        if resp.status_code != 200 or not body.get("success"):
            raise BenchError(f"upload of {name} failed: {resp.status_code} {body}")
        return str(body["plugin_id"])

    def deploy(self, plugin_id: str) -> dict[str, Any]:
        resp = self.client.post(f"/v1/namespaces/{NS}/plugins/{plugin_id}/deploy")
        if resp.status_code != 200:
            raise BenchError(f"deploy of {plugin_id} failed: {resp.status_code} {resp.text}")
        return dict(resp.json())

    def status(self, plugin_id: str) -> dict[str, Any]:
        resp = self.client.get(f"/v1/namespaces/{NS}/plugins/{plugin_id}/status")
        if resp.status_code != 200:
            raise BenchError(f"status of {plugin_id}: {resp.status_code} {resp.text}")
        return dict(resp.json())

    def list_deployed(self) -> dict[str, bool]:
        resp = self.client.get(f"/v1/namespaces/{NS}/plugins")
        resp.raise_for_status()
        return {p["plugin_id"]: bool(p["deployed"]) for p in resp.json()["plugins"]}

    def undeploy(self, plugin_id: str) -> None:
        resp = self.client.post(f"/v1/namespaces/{NS}/plugins/{plugin_id}/undeploy")
        if resp.status_code != 200:
            raise BenchError(f"undeploy of {plugin_id}: {resp.status_code} {resp.text}")

    def wait_deployed(
        self, plugin_id: str, after_release: Any = None, timeout: float = 180.0, poll: float = 0.01
    ) -> dict[str, Any]:
        """Poll the status until `deployed` (of a release other than ``after_release``)."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = self.status(plugin_id)
            if last["status"] == "deployed" and (
                after_release is None or last.get("release_id") != after_release
            ):
                return last
            if last["status"] == "failed":
                raise BenchError(f"{plugin_id} failed to deploy: {last.get('error')}")
            time.sleep(poll)
        raise BenchError(f"{plugin_id} not deployed after {timeout:.0f}s: {last}")

    def deploy_and_wait(self, plugin_id: str, timeout: float = 180.0) -> float:
        """Seconds from the deploy POST until the status says `deployed` (a new release)."""
        before = self.status(plugin_id).get("release_id")
        t0 = time.perf_counter()
        self.deploy(plugin_id)
        self.wait_deployed(plugin_id, after_release=before, timeout=timeout)
        return time.perf_counter() - t0

    def route_url(self, plugin_id: str) -> str:
        return f"{self.url}/inference/{NS}/custom_plugin_{plugin_id}"

    def alias_url(self, name: str) -> str:
        return f"{self.url}/inference/{NS}/{name}"

    def status_url(self, plugin_id: str) -> str:
        return f"{self.url}/v1/namespaces/{NS}/plugins/{plugin_id}/status"


def release_replica_pids(home: Path, release_id: int | None) -> list[int]:
    """The head process (the sandbox wrapper, or the interpreter without one) of each replica
    of a release, from the server's replica records: a replica claimed from the replica pool
    keeps the pool's command line, so its release id is not in it."""
    from plughost.backends.local.registry import RECORD_SUFFIX, ReplicaRecord
    from plughost.config import Settings

    folder = Settings(home=home).replicas_dir
    pids = []
    for path in folder.glob(f"*{RECORD_SUFFIX}"):
        try:
            record = ReplicaRecord.from_json(path.read_bytes())
        except (OSError, ValueError, TypeError):  # one being replaced right now
            continue
        if record.release_id == release_id:
            pids.append(record.pid)
    return pids
