"""A malicious batch pipeline on the Ray backend: contained like a realtime replica.

Batch jobs on Ray run the pipeline in sandboxed batch workers that Ray Data's actors start
on their node (plughost.batch.ray_steps). This plugin's pipeline.py tries, at import, in
``build_steps``, in ``prepare`` and in every step: to read the server's files (admin key,
database) and environment (the server's and its parent's ``/proc/<pid>/environ``, its own
variables), to connect to a listener on the host's loopback and to the server's API, and to
write outside its folder (a host marker, the server's home) and into its own folder. The
step writes what it saw into the output; the test checks the output and the host.

The control runs the same plugin on a server with PLUGHOST_UNSAFE_BATCH_RAY_IN_PROCESS=1
(the pipeline in Ray's actors, unsandboxed, as before the sandbox applied to batch on Ray)
and requires every one of those checks to see the harm: the test would fail if the
sandbox were removed.
"""

from __future__ import annotations

import importlib.util
import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sec_servers import CANARY, server_env
from sec_support import Listeners, upload_raw
from support import LiveServer, zip_bytes

from plughost.backends.ray.node import package_cache

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray Serve is not installed"
)

RAY_ENV = {"PLUGHOST_BACKEND": "ray", "PLUGHOST_RAY_NUM_CPUS": "2"}
UNSAFE = {"PLUGHOST_UNSAFE_BATCH_RAY_IN_PROCESS": "1"}

MANIFEST = """
feature_extractor_name = "{name}"
version = "1.0.0"
dependencies = []
features = []
input_mappings = {{"text": "text"}}
compute_profile = {{"batch_size": 4, "max_concurrency": 1}}
"""

PIPELINE = """
import json
import os

CTX = {ctx!r}


def attack(where):
    seen = {{"where": where}}

    def attempt(name, fn):
        try:
            seen[name] = fn()
        except BaseException as exc:
            seen[name] = "blocked: " + type(exc).__name__

    def read(path):
        with open(path, "rb") as f:
            return f.read(65536).decode("utf-8", "replace")

    def connect(port):
        import socket
        conn = socket.create_connection(("127.0.0.1", port), timeout=2)
        conn.close()
        return "connected"

    def write(path):
        with open(path, "w") as f:
            f.write("pwned")
        return "wrote " + path

    name = CTX["case"] + "-" + where
    attempt("admin_key", lambda: read(CTX["admin_key"]))
    attempt("database", lambda: read(CTX["db"]))
    attempt("server_environ", lambda: read("/proc/%d/environ" % CTX["server_pid"]))
    attempt("parent_environ", lambda: read("/proc/%d/environ" % os.getppid()))
    attempt("own_environ", lambda: dict(os.environ))
    attempt("home_listing", lambda: os.listdir(CTX["home"]))
    attempt("tcp_listener", lambda: connect(CTX["tcp_port"]))
    attempt("server_api", lambda: connect(CTX["server_port"]))
    attempt("write_marker", lambda: write(CTX["marker"] + "-" + where))
    attempt("write_home", lambda: write(os.path.join(CTX["home"], "pwned-" + name)))
    own = os.path.dirname(os.path.abspath(__file__))  # the plugin folder
    attempt("write_own_folder", lambda: write(os.path.join(own, "pwned-" + name)))
    return seen


attack("import")


def build_steps(extractor_request, container=None, base_steps=None, dataset_size=None,
                content_flags=None):
    attack("build")

    def prepare(ds):
        attack("prepare")
        return ds

    def step(batch):
        batch = batch.copy()
        batch["seen"] = json.dumps(attack("step"), default=str)
        return batch

    return {{"steps": [step], "prepare": prepare}}
"""


def _ray_server(home: Path, extra: dict[str, str]) -> Iterator[LiveServer]:
    env = {**server_env(skip_scan=True), **RAY_ENV, **extra}
    srv = LiveServer(home=home, extra_env=env).start(timeout=180)
    try:
        srv.key = (home / "admin-key").read_text().strip()
        sandbox = httpx.get(f"{srv.url}/healthz", timeout=10).json()["sandbox"]
        assert all(sandbox["layers"].values()), sandbox
        yield srv
    finally:
        srv.stop(timeout=60)


@pytest.fixture(scope="module")
def listeners(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listeners]:
    """This module's own host listeners (shadowing the session's): the control run below
    connects to them on purpose, and the other security tests expect theirs untouched."""
    lst = Listeners(tmp_path_factory.mktemp("batch-ray-listeners"))
    yield lst
    lst.close()


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _ray_server(tmp_path_factory.mktemp("sec-batch-ray"), {})


@pytest.fixture(scope="module")
def unsandboxed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _ray_server(tmp_path_factory.mktemp("sec-batch-ray-unsafe"), UNSAFE)


def _context(server: LiveServer, marker_dir: Path, listeners: Listeners) -> dict[str, Any]:
    case = f"b{uuid.uuid4().hex[:8]}"
    assert server.proc is not None
    return {
        "case": case,
        "marker": str(marker_dir / case),
        "home": str(server.home),
        "admin_key": str(server.home / "admin-key"),
        "db": str(server.home / "plughost.db"),
        "server_pid": server.proc.pid,
        "server_port": server.port,
        "tcp_port": listeners.tcp_port,
    }


def _run_job(server: LiveServer, ctx: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Upload the plugin, run a 12-row batch job; its final document and every text the
    server handed back (status, errors, the output's rows)."""
    name = f"evil_{ctx['case']}"
    files = {
        "manifest.py": MANIFEST.format(name=name),
        "pipeline.py": PIPELINE.format(ctx=ctx),
    }
    rows = "\n".join(json.dumps({"text": f"row {i}"}) for i in range(12)).encode() + b"\n"
    with server.client() as c:
        up = upload_raw(c, name, zip_bytes(files))
        assert up["success"], up
        r = c.post(
            f"/v1/namespaces/ns_default/plugins/{up['plugin_id']}/batches",
            files={"file": ("rows.jsonl", rows, "application/octet-stream")},
        )
        assert r.status_code == 202, r.text
        endpoint = r.json()["status_endpoint"]
        deadline = time.monotonic() + 300
        while (body := c.get(endpoint).json())["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline, f"job never ended: {body}\n{server.logs()[-3000:]}"
            time.sleep(0.5)
    texts = [json.dumps(body)]
    if body.get("output_url"):
        data = httpx.get(body["output_url"], timeout=30).content
        texts += [str(s) for s in pd.read_parquet(io.BytesIO(data))["seen"]]
    return body, texts


def _harm(server: LiveServer, ctx: dict[str, Any], texts: list[str], hits: int) -> list[str]:
    """What the plugin managed to do, seen from the host (empty when it was contained)."""
    found = []
    joined = "\n".join(texts)
    for secret in (server.key, CANARY, "SQLite format 3"):
        if secret and secret in joined:
            found.append(f"leaked {secret[:16]}...")
    if hits:
        found.append(f"{hits} connections to the host's listener")
    markers = sorted(p.name for p in Path(ctx["marker"]).parent.glob(f"{ctx['case']}-*"))
    if markers:
        found.append(f"wrote host markers {markers}")
    pwned = sorted(str(p) for p in Path(ctx["home"]).rglob(f"pwned-{ctx['case']}-*"))
    if pwned:
        found.append(f"wrote into the server's home {pwned}")
    if '"server_api": "connected"' in joined:
        found.append("reached the server's API")
    if own := _own_writes(ctx):
        found.append(f"wrote into its own folder {own}")
    return found


def _own_writes(ctx: dict[str, Any]) -> list[Path]:
    """Files the plugin wrote into its package folder (the node's package cache)."""
    return sorted(package_cache().glob(f"*/pwned-{ctx['case']}-*"))


def test_batch_pipeline_on_ray_is_contained(
    sandboxed: LiveServer, marker_dir: Path, listeners: Listeners
) -> None:
    ctx = _context(sandboxed, marker_dir, listeners)
    before = listeners.count()
    body, texts = _run_job(sandboxed, ctx)
    assert body["status"] == "completed", body
    seen = [json.loads(t) for t in texts[1:]]
    assert len(seen) == 12 and all(s["where"] == "step" for s in seen), texts[:2]
    assert _harm(sandboxed, ctx, texts, listeners.count() - before) == []
    step = seen[0]
    for key in ("admin_key", "database", "server_environ", "home_listing", "tcp_listener"):
        assert str(step[key]).startswith("blocked"), (key, step[key])
    assert all(str(step[k]).startswith("blocked") for k in ("write_marker", "write_home"))
    assert str(step["write_own_folder"]).startswith("blocked"), step["write_own_folder"]
    assert "SECURITY_CANARY" not in step["own_environ"], step["own_environ"]
    assert httpx.get(f"{sandboxed.url}/healthz", timeout=10).status_code == 200


def test_control_without_the_sandbox_the_same_checks_see_the_harm(
    unsandboxed: LiveServer, marker_dir: Path, listeners: Listeners
) -> None:
    ctx = _context(unsandboxed, marker_dir, listeners)
    before = listeners.count()
    body, texts = _run_job(unsandboxed, ctx)
    assert body["status"] == "completed", body
    harm = _harm(unsandboxed, ctx, texts, listeners.count() - before)
    kinds = {h.split()[0] for h in harm}
    assert {"leaked", "wrote"} <= kinds and any("listener" in h for h in harm), harm
    assert any("server's home" in h for h in harm) and any("markers" in h for h in harm), harm
    assert any("its own folder" in h for h in harm), harm
    for path in _own_writes(ctx):  # the package cache outlives the test's server
        path.unlink()
