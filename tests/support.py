"""Test support: a live plughost server in a subprocess, archive builders, plugin sources."""

from __future__ import annotations

import io
import itertools
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from plughost.server.fdcheck import FAILED_CLOSE_PREFIX
from plughost.server.loopwatch import PREFIX as LOOP_STALL_PREFIX

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "plugins"


# Each pytest-xdist worker hands out ports from a range of its own, between Ray's worker
# ports (10002-19999 by default, which `ray start` checks its own ports against) and the
# kernel's ephemeral range (32768 up): two workers never pick the same free port at the
# same moment, and no client connection's local port takes one between the pick and the
# server's bind. Each process starts at a random place in its range, so that two runs at
# once (two developers on one machine) do not walk the same ports in step.
PORTS_PER_WORKER = 1500
_next_port = itertools.count(random.randrange(PORTS_PER_WORKER))


def _port_range() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = 20000 + PORTS_PER_WORKER * (int(worker) if worker.isdigit() else 0)
    return range(first, first + PORTS_PER_WORKER)


def free_port() -> int:
    ports = _port_range()
    for _ in range(len(ports)):
        port = ports[next(_next_port) % len(ports)]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports}")


def create_pg_database() -> str:
    """A fresh PostgreSQL database for one server; returns its SQLAlchemy URL."""
    import psycopg

    name = f"plughost_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def drop_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class LiveServer:
    """`plughost serve` in a subprocess, on a free port, with its own home folder."""

    home: Path
    database_url: str = ""
    key: str = field(default_factory=lambda: "ph_test_" + uuid.uuid4().hex)
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGHOST_")}
        env.update(PLUGHOST_HOME=str(self.home), PLUGHOST_BOOTSTRAP_KEY=self.key)
        # replicas outlive a SIGKILLed server (issue 14): a test that kills one and never
        # starts another on its home leaves them for a minute, not the default ten
        env["PLUGHOST_REPLICA_ORPHAN_TIMEOUT_S"] = "60"
        # every failed close is logged (plughost.server.fdcheck); stop() fails the test on one
        env["PLUGHOST_FD_CHECK"] = "1"
        # every event-loop stall over 100 ms is logged (plughost.server.loopwatch); stop() fails on one
        env["PLUGHOST_LOOP_STALL_MS"] = "100"
        if self.database_url:
            env["PLUGHOST_DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60.0) -> LiveServer:
        return self.launch().wait_healthy(timeout)

    def launch(self) -> LiveServer:
        """Start the process without waiting for it (servers started together launch all
        first, then wait for each with :meth:`wait_healthy`)."""
        self.port = self.port or free_port()
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path = self.home / f"server-{self.port}-{int(time.time() * 1000)}.log"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "plughost", "serve", "--port", str(self.port), "--log-level", "info"],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def wait_healthy(self, timeout: float = 60.0) -> LiveServer:
        """Wait until ``/healthz`` answers 200; RuntimeError with the log if it exits first."""
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.logs()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become healthy:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the server and wait; then fail if its log holds a failed close."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        assert_no_fd_errors(self.logs())
        assert_no_loop_stalls(self.logs())

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def client(self, key: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        hooks = kw.pop("event_hooks", {})
        hooks.setdefault("response", []).append(self._show_internal_errors)
        return httpx.Client(
            base_url=self.url, headers=headers, timeout=60, event_hooks=hooks, **kw
        )

    def anonymous(self) -> httpx.Client:
        """A client that sends no key."""
        return httpx.Client(base_url=self.url, timeout=60)

    def _show_internal_errors(self, response: httpx.Response) -> None:
        """A 500 of the server's own (InternalServerError) names only the exception's type;
        the server logged its traceback. Print the log's tail, so that a failing test shows
        the cause (pytest shows captured output). A plugin's error (PluginError, also a 500)
        says what it was: the log is not read for it, however often tests provoke one."""
        if response.status_code == 500 and b"InternalServerError" in response.read():
            tail = self.logs()[-6000:]
            print(f"--- 500 from {response.request.url}; the server's log ends:\n{tail}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the admin CLI against this server's database."""
        return subprocess.run(
            [sys.executable, "-m", "plughost", *args], env=self.env(),
            capture_output=True, text=True, timeout=60, check=False,
        )


def assert_no_fd_errors(log_text: str) -> None:
    """Fail when a server log holds a close that failed with EBADF (plughost.server.fdcheck): some
    code closed a descriptor it did not own, maybe another thread's file."""
    start = log_text.find(FAILED_CLOSE_PREFIX)
    if start >= 0:
        line_start = log_text.rfind("\n", 0, start) + 1
        raise AssertionError(f"the server logged a failed close:\n{log_text[line_start:][:6000]}")


# Stalls known and not fixed yet: a stall line holding one of these is let through (a
# substring of its "file:line function" or stack). Also TEST_LOOP_STALL_ALLOW, comma-separated.
LOOP_STALL_ALLOW: tuple[str, ...] = ()
# Servers log every stall over 100 ms (PLUGHOST_LOOP_STALL_MS). A test fails on one that
# names our own code and held the loop this long: on the 2-core machine, with two workers'
# servers and replicas beside it, scheduling alone stretched a read of /proc or a thread's
# start to 200-700 ms (and the run-queue time the watchdog takes off does not cover a GIL
# handed to a starved thread), while the freezes this check exists for (an upload's scan
# awaited on the loop) held it for seconds. TEST_LOOP_STALL_FAIL_MS sets another bound.
LOOP_STALL_FAIL_MS = 2000
# A stall the loop spent waiting for the GIL, or whose place no thread could see, names no
# blocking code of ours: logged, never a failure.
LOOP_STALL_UNATTRIBUTED = ("(GIL wait)", "in an unseen place")
_STALL_MS = re.compile(re.escape(LOOP_STALL_PREFIX) + r"(\d+) ms")


def loop_stalls(log_text: str, fail_ms: int | None = None) -> list[str]:
    """The stall lines of a log that fail a test (see LOOP_STALL_FAIL_MS)."""
    bound = fail_ms if fail_ms is not None else int(
        os.environ.get("TEST_LOOP_STALL_FAIL_MS", LOOP_STALL_FAIL_MS)
    )
    allowed = LOOP_STALL_ALLOW + LOOP_STALL_UNATTRIBUTED + tuple(
        a for a in os.environ.get("TEST_LOOP_STALL_ALLOW", "").split(",") if a
    )
    stalls = []
    for line in log_text.splitlines():
        found = _STALL_MS.search(line)
        if found and int(found.group(1)) >= bound and not any(a in line for a in allowed):
            stalls.append(line[found.start():])
    return stalls


def assert_no_loop_stalls(log_text: str) -> None:
    """Fail when a server log holds a loop stall (plughost.server.loopwatch) that fails a test."""
    stalls = loop_stalls(log_text)
    if stalls:
        raise AssertionError("the server's event loop stalled:\n" + "\n".join(stalls[:20]))


def sdk_client(server: LiveServer, key: str | None = None) -> Any:
    import mixpeek

    config = mixpeek.Configuration(host=server.url)
    api_client = mixpeek.ApiClient(config)
    api_client.set_default_header("Authorization", f"Bearer {key or server.key}")
    return api_client


# -- archives -------------------------------------------------------------------------------
def zip_bytes(files: dict[str, str | bytes], folder: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(f"{folder}{name}", data)
    return buf.getvalue()


def tar_gz_bytes(files: dict[str, str | bytes], folder: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(f"{folder}{name}")
            info.size = len(raw)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def dir_files(path: Path) -> dict[str, bytes]:
    """Every file under `path` (no caches), keyed by relative posix path."""
    out: dict[str, bytes] = {}
    for p in sorted(path.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            out[p.relative_to(path).as_posix()] = p.read_bytes()
    return out


ATTR_MANIFEST = '''
feature_extractor_name = "{name}"
version = "v1"
description = "attribute-style test plugin"
dependencies = []
features = [{{"feature_type": "embedding", "feature_name": "vec", "embedding_dim": 4,
             "distance_metric": "cosine"}}]
output_schema = {{"type": "object", "properties": {{"embedding": {{"type": "array"}}}}}}
serve_config = {{"num_replicas": 1}}
'''

METADATA_MANIFEST = '''
from pydantic import BaseModel, Field

metadata = {{
    "feature_extractor_name": "{name}",
    "version": "1.0.0",
    "description": "metadata-style test plugin",
    "category": "text",
}}


class InputSchema(BaseModel):
    text: str = Field(..., description="text to embed")


class OutputSchema(BaseModel):
    embedding: list[float]


class ParameterSchema(BaseModel):
    normalize: bool = True


input_schema = InputSchema
output_schema = OutputSchema
parameter_schema = ParameterSchema
features = [{{"feature_type": "embedding", "feature_name": "vec", "embedding_dim": 4,
             "distance_metric": "cosine"}}]
supported_input_types = ["text"]
'''

PIPELINE = '''
def build_steps(extractor_request, container=None, base_steps=None, dataset_size=None,
                content_flags=None):
    def step(df):
        return df
    return {"steps": [step], "prepare": lambda df: df}
'''

REALTIME = '''
try:
    from shared.plugins.inference.serve import BaseInferenceService
except ImportError:
    class BaseInferenceService:
        def __init__(self, **kwargs):
            self.config = kwargs


class Service(BaseInferenceService):
    def run_inference(self, inputs, parameters):
        text = str(inputs.get("text", ""))
        return {"embedding": [float(len(text)), 1.0, 2.0, 3.0], "echo": text}
'''


def plugin_files(name: str, style: str = "attr", realtime: str | None = REALTIME) -> dict[str, str | bytes]:
    manifest = (ATTR_MANIFEST if style == "attr" else METADATA_MANIFEST).format(name=name)
    files: dict[str, str | bytes] = {"manifest.py": manifest, "pipeline.py": PIPELINE}
    if realtime is not None:
        files["realtime.py"] = realtime
    return files


def unique_name(prefix: str = "plug") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"
