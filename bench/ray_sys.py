"""Drive a bench.ray_host child process: a private Ray cluster with Serve on one port."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procstat
from bench.plughost_sys import REPO, BenchError, free_port


def ray_available() -> str | None:
    """None when `ray[serve]` imports in this interpreter, else the reason it does not."""
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means: skip the Ray systems
        return f"ray[serve] is not importable ({type(exc).__name__}: {exc}); install plughost[ray]"
    return None


def variant_env(variant: str, private_dir: Path) -> dict[str, str]:
    from bench.ray_host import COMMON_ENV, VARIANT_ENV

    env = {**COMMON_ENV, **VARIANT_ENV[variant]}
    if env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        # HAProxy's files and side ports default to fixed /tmp paths and ports; keep ours
        # private so a second Ray on this machine (another user's) cannot collide with it.
        env.update(
            RAY_SERVE_HAPROXY_CONFIG_FILE_LOC=str(private_dir / "haproxy.cfg"),
            RAY_SERVE_HAPROXY_SOCKET_PATH=str(private_dir / "admin.sock"),
            RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH=str(private_dir / "metrics.sock"),
            RAY_SERVE_HAPROXY_SERVER_STATE_BASE=str(private_dir),
            RAY_SERVE_HAPROXY_SERVER_STATE_FILE=str(private_dir / "server-state"),
            RAY_SERVE_HAPROXY_STATS_PORT=str(free_port()),
            RAY_SERVE_HAPROXY_METRICS_PORT=str(free_port()),
        )
    env.update(
        RAY_SERVE_FALLBACK_PROXY_HTTP_PORT=str(free_port()),
        RAY_SERVE_FALLBACK_PROXY_GRPC_PORT=str(free_port()),
    )
    return env


class RayServeHost:
    """One Ray cluster + Serve instance (variant ``default`` or ``tuned``)."""

    def __init__(self, variant: str, num_cpus: int, log_dir: Path) -> None:
        self.variant = variant
        self.num_cpus = num_cpus
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_dir = log_dir
        # short: Ray adds a 56-char folder under it and HAProxy sockets allow 97 chars
        self.private_dir = Path(tempfile.mkdtemp(prefix="bray", dir="/tmp"))
        self.ready_info: dict[str, Any] = {}
        self._buf = b""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> RayServeHost:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(variant_env(self.variant, self.private_dir))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"ray-{self.variant}.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.ray_host",
                "--port",
                str(self.port),
                "--variant",
                self.variant,
                "--num-cpus",
                str(self.num_cpus),
            ],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
            cwd=REPO,
        )
        self.ready_info = self._read(timeout)
        if self.ready_info.get("event") != "ready":
            raise BenchError(f"ray host ({self.variant}) did not start: {self.ready_info}")
        return self

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                if line.startswith(b"BENCH "):
                    return dict(json.loads(line[6:]))
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"ray host ({self.variant}) gave no answer in {timeout:.0f}s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise BenchError(f"ray host ({self.variant}) exited: {self.log_tail()}")
                self._buf += chunk

    def _command(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(payload) + "\n").encode())
        self.proc.stdin.flush()
        answer = self._read(timeout)
        if not answer.get("ok"):
            raise BenchError(f"ray host ({self.variant}): {answer.get('error')}")
        return answer

    def deploy(
        self,
        app: str,
        plugin_dir: Path,
        call_in_thread: bool = False,
        timeout: float = 300.0,
        options: dict[str, Any] | None = None,
    ) -> float:
        """serve.run of the plugin as application ``app`` at ``/app``; returns its seconds.
        ``options``: extra ``serve.deployment`` options (e.g. ``autoscaling_config``)."""
        answer = self._command(
            {
                "cmd": "deploy",
                "app": app,
                "plugin_dir": str(plugin_dir),
                "route_prefix": f"/{app}",
                "call_in_thread": call_in_thread,
                "options": options or {},
            },
            timeout,
        )
        return float(answer["seconds"])

    def status(self, app: str, timeout: float = 60.0) -> dict[str, Any]:
        """``{"app_status": ..., "replicas": {state: count}}`` of application ``app``."""
        return self._command({"cmd": "status", "app": app}, timeout)

    def delete(self, app: str, timeout: float = 120.0) -> float:
        return float(self._command({"cmd": "delete", "app": app}, timeout)["seconds"])

    def app_url(self, app: str) -> str:
        return f"{self.url}/{app}"

    def replica_pids(self, app: str) -> list[int]:
        return procstat.find_descendants([self.pid], f"ServeReplica:{app}:")

    def log_tail(self, lines: int = 15) -> str:
        path = self.log_dir / f"ray-{self.variant}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Ask for a clean exit, then kill whatever of this cluster is left.

        The host runs in its own session (start_new_session) and Ray's processes inherit it,
        so the session id names exactly this cluster's processes.
        """
        if self.proc is None:
            return
        sid = self.proc.pid
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for pid in procstat.session_members(sid):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        shutil.rmtree(self.private_dir, ignore_errors=True)
