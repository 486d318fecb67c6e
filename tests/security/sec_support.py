"""Support for the malicious-plugin suite: payload type, plugin rendering, listeners, a case runner.

A payload is the body of ``def attack(ctx)``: it tries one thing a hostile plugin would do and
returns what it saw (``escaped`` is its own verdict). The test never trusts that verdict
alone: it checks the effect on the host itself (marker files, listener connections, secrets
in responses, the server and a neighbour plugin still answering).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from support import PIPELINE, LiveServer, zip_bytes

NS = "ns_default"


@dataclass(frozen=True)
class Payload:
    """One malicious plugin.

    ``phase``: where ``attack`` runs: ``call`` (an inference request), ``import`` (loading
    realtime.py, i.e. at deploy) or ``manifest`` (reading manifest.py, i.e. at upload).
    ``bounds``: result keys whose values must stay at or below a number (a limit held).
    ``files``: extra plugin files; ``raw_realtime``: realtime.py bytes used as they are.
    """

    name: str
    category: str
    code: str
    phase: str = "call"
    bounds: dict[str, int] = field(default_factory=dict)
    files: dict[str, str | bytes] = field(default_factory=dict)
    raw_realtime: bytes | None = None

    @property
    def id(self) -> str:
        return f"{self.category}-{self.name}"


REALTIME = '''
CTX = {ctx!r}
PHASE = {phase!r}


def shell_escaped():
    import os
    return os.path.exists(CTX["evidence"])


{code}


def _run():
    try:
        out = attack(CTX)
    except BaseException as exc:
        out = {{"error": repr(exc)}}
    if not isinstance(out, dict):
        out = {{"value": repr(out)}}
    return out


if PHASE == "import":
    IMPORT_RESULT = _run()

try:
    from shared.plugins.inference.serve import BaseInferenceService
except ImportError:
    class BaseInferenceService:
        def __init__(self, **kwargs):
            self.config = kwargs


class Service(BaseInferenceService):
    def run_inference(self, inputs, parameters):
        if PHASE == "import":
            return IMPORT_RESULT
        return _run()
'''

MANIFEST = '''
feature_extractor_name = "{name}"
version = "1.0.0"
dependencies = []
features = []
serve_config = {{"num_replicas": 1}}
'''

MANIFEST_ATTACK = '''
CTX = {ctx!r}

{code}

try:
    _out = attack(CTX)
except BaseException as exc:
    _out = {{"error": repr(exc)}}
feature_extractor_name = "{name}"
version = "1.0.0"
description = repr(_out)[:480]
dependencies = []
features = []
'''


def plugin_zip(payload: Payload, name: str, ctx: dict[str, Any]) -> bytes:
    """The archive of a malicious plugin."""
    files: dict[str, str | bytes] = {"pipeline.py": PIPELINE, **payload.files}
    if payload.phase == "manifest":
        files["manifest.py"] = MANIFEST_ATTACK.format(ctx=ctx, code=payload.code, name=name)
        files["realtime.py"] = REALTIME.format(ctx=ctx, phase="call", code=BENIGN_ATTACK)
    else:
        files["manifest.py"] = MANIFEST.format(name=name)
        if payload.raw_realtime is not None:
            files["realtime.py"] = payload.raw_realtime.replace(b"%(ctx)s", repr(ctx).encode())
        else:
            files["realtime.py"] = REALTIME.format(ctx=ctx, phase=payload.phase, code=payload.code)
    return zip_bytes(files)


BENIGN_ATTACK = '''
def attack(ctx):
    return {"escaped": False, "benign": True}
'''


# -- listeners the plugins try to reach -------------------------------------------------------
class Listeners:
    """TCP and UDP on 127.0.0.1, a Unix socket at a host path and an abstract Unix socket;
    counts every connection or datagram."""

    def __init__(self, folder: Path) -> None:
        self.hits: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.unix_path = str(folder / "listener.sock")
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind(self.unix_path)
        os.chmod(self.unix_path, 0o777)
        self.unix.listen(16)
        self.abstract_name = f"plughost-sec-{uuid.uuid4().hex}"
        self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract.bind("\0" + self.abstract_name)
        self.abstract.listen(16)
        self._threads = [
            threading.Thread(target=self._accept, args=(s, k), daemon=True)
            for s, k in ((self.tcp, "tcp"), (self.unix, "unix"), (self.abstract, "abstract"))
        ]
        self._threads.append(threading.Thread(target=self._datagrams, daemon=True))
        for t in self._threads:
            t.start()

    @property
    def tcp_port(self) -> int:
        return int(self.tcp.getsockname()[1])

    @property
    def udp_port(self) -> int:
        return int(self.udp.getsockname()[1])

    def _record(self, kind: str) -> None:
        with self._lock:
            self.hits.append(kind)

    def _accept(self, server: socket.socket, kind: str) -> None:
        server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            self._record(kind)
            conn.close()

    def _datagrams(self) -> None:
        self.udp.settimeout(0.2)
        while not self._stop.is_set():
            try:
                self.udp.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            self._record("udp")

    def count(self) -> int:
        with self._lock:
            return len(self.hits)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        for s in (self.tcp, self.udp, self.unix, self.abstract):
            s.close()


# -- running one case -------------------------------------------------------------------------
@dataclass
class Outcome:
    """What happened to one malicious plugin, and every text the server answered with."""

    stage: str  # rejected | deploy_failed | call_error | call_ok
    texts: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    release_id: int | None = None


def upload_raw(c: httpx.Client, name: str, archive: bytes, ns: str = NS) -> dict[str, Any]:
    resp = c.post(
        f"/v1/namespaces/{ns}/plugins",
        data={"name": name, "version": "1.0.0"},
        files={"file": ("plugin.zip", archive, "application/zip")},
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def wait_status(
    c: httpx.Client, plugin_id: str, timeout: float = 60.0, ns: str = NS
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = c.get(f"/v1/namespaces/{ns}/plugins/{plugin_id}/status").json()
        if body["status"] in ("deployed", "failed"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"{plugin_id} never settled: {body}")


def run_case(server: LiveServer, payload: Payload, name: str, ctx: dict[str, Any]) -> Outcome:
    """Upload, deploy and call one malicious plugin; remove it again."""
    with server.client() as c:
        up = upload_raw(c, name, plugin_zip(payload, name, ctx))
        texts = [str(up)]
        if not up.get("success"):
            return Outcome("rejected", texts)
        plugin_id = up["plugin_id"]
        try:
            return _deploy_and_call(c, plugin_id, texts)
        finally:
            texts.append(c.get(f"/v1/namespaces/{NS}/plugins/{plugin_id}").text)
            c.delete(f"/v1/namespaces/{NS}/plugins/{plugin_id}")


def _deploy_and_call(c: httpx.Client, plugin_id: str, texts: list[str]) -> Outcome:
    deployed = c.post(f"/v1/namespaces/{NS}/plugins/{plugin_id}/deploy")
    texts.append(deployed.text)
    assert deployed.status_code == 200, deployed.text
    body = wait_status(c, plugin_id)
    texts.append(str(body))
    release = body.get("release_id")
    if body["status"] == "failed":
        return Outcome("deploy_failed", texts, release_id=release)
    resp = c.post(body["route_prefix"], json={"inputs": {}, "parameters": {}}, timeout=60)
    texts.append(resp.text)
    if resp.status_code != 200:
        return Outcome("call_error", texts, release_id=release)
    result = resp.json()
    return Outcome("call_ok", texts, result if isinstance(result, dict) else None, release)


def healthy(server: LiveServer) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    return False


def deploy_files(
    c: httpx.Client, name: str, files: dict[str, str | bytes], ns: str = NS
) -> tuple[str, dict[str, Any]]:
    """Upload and deploy a plugin; its id and settled status (deployed or failed)."""
    up = upload_raw(c, name, zip_bytes(files), ns)
    assert up["success"], up
    plugin_id = str(up["plugin_id"])
    c.post(f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy").raise_for_status()
    return plugin_id, wait_status(c, plugin_id, ns=ns)


def release_processes(
    socket_dir: str, release_id: int, replicas_dir: Path | None = None
) -> list[int]:
    """Host pids still running code of a release: bwrap, the worker, anything it forked (all
    carry the replica's socket path, ``<socket_dir>/r<release>-<n>.sock``, on their command
    line). ``replicas_dir``: the server's replica registry, whose records (kept until their
    replica exits) name the sockets of replicas claimed from the replica pool too."""
    needles = [f"{socket_dir}/r{release_id}-".encode()]
    for path in replicas_dir.glob("*.json") if replicas_dir is not None else ():
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(path.read_text())
            if record.get("release_id") == release_id:
                needles.append(str(record["socket_path"]).encode())
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes()
            if any(needle in argv for needle in needles):
                pids.append(int(proc.name))
    return pids
