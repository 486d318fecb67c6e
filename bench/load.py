"""One load run against one endpoint, from a separate process: wrk (closed loop) or ours.

Every run returns the same dict: ``rps`` (2xx answers per second), ``p50_us``, ``p90_us``,
``p99_us``, ``max_us``, ``requests``, ``ok``, ``failed`` (non-2xx + socket errors),
``duration_s``, ``tool`` and ``loadgen_cpu_s`` (the load generator's own CPU time).
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.plughost_sys import REPO

BODY = '{"inputs": {"text": "the quick brown fox jumps over the lazy dog"}, "parameters": {}}'

LUA_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,"max_us":%.1f,' ..
    '"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""


@dataclass(frozen=True)
class LoadSpec:
    urls: list[str]
    method: str = "POST"
    body: str = BODY
    headers: list[str] = field(default_factory=list)
    mode: str = "closed"  # or "open"
    concurrency: int = 1
    rate: float = 0.0
    duration: float = 2.0


def wrk_path() -> str | None:
    return shutil.which("wrk")


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


def _wrk_script(spec: LoadSpec) -> str:
    lines = [f"wrk.method = {_lua_string(spec.method)}"]
    if spec.body and spec.method != "GET":
        lines.append(f"wrk.body = {_lua_string(spec.body)}")
        lines.append('wrk.headers["Content-Type"] = "application/json"')
    for header in spec.headers:
        name, _, value = header.partition(":")
        lines.append(f"wrk.headers[{_lua_string(name.strip())}] = {_lua_string(value.strip())}")
    if len(spec.urls) > 1:
        paths = ", ".join(_lua_string(_path(u)) for u in spec.urls)
        lines += [
            f"local paths = {{{paths}}}",
            "local n = 0",
            "request = function()",
            "  n = n + 1",
            "  return wrk.format(nil, paths[(n % #paths) + 1])",
            "end",
        ]
    return "\n".join(lines) + "\n" + LUA_DONE


def _path(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(spec: LoadSpec) -> dict[str, Any]:
    wrk = wrk_path()
    assert wrk is not None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(_wrk_script(spec))
        script = fh.name
    seconds = max(1, math.ceil(spec.duration))
    cmd = [
        wrk,
        "-t1",
        f"-c{spec.concurrency}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        script,
        spec.urls[0],
    ]
    cpu0 = _children_cpu()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    finally:
        Path(script).unlink(missing_ok=True)
    cpu = _children_cpu() - cpu0
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result: {out.stdout[-500:]} {out.stderr[-500:]}")
    raw = json.loads(line[8:])
    duration = raw["duration_us"] / 1e6
    socket_errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    ok = raw["requests"] - raw["status"]
    return {
        "tool": "wrk",
        "duration_s": duration,
        "requests": raw["requests"],
        "ok": ok,
        "failed": raw["status"] + socket_errors,
        "rps": ok / duration if duration else 0.0,
        "p50_us": raw["p50_us"],
        "p90_us": raw["p90_us"],
        "p99_us": raw["p99_us"],
        "max_us": raw["max_us"],
        "loadgen_cpu_s": cpu,
    }


def loadgen_command(spec: LoadSpec, duration: float | None = None) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "bench.loadgen",
        *spec.urls,
        "--method",
        spec.method,
        "--mode",
        spec.mode,
        "-c",
        str(spec.concurrency),
        "--rate",
        str(spec.rate or 1),
        "-d",
        str(spec.duration if duration is None else duration),
    ]
    if spec.method != "GET":
        cmd += ["--body", spec.body]
    for header in spec.headers:
        cmd += ["--header", header]
    return cmd


def parse_loadgen(stdout: str, cpu: float) -> dict[str, Any]:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"load generator gave no result: {stdout[-500:]}")
    raw = json.loads(lines[-1])
    failed = sum(raw["errors"].values()) + raw["conn_errors"]
    return {
        "tool": "python",
        "duration_s": raw["duration_s"],
        "requests": raw["requests"],
        "ok": raw["ok"],
        "failed": failed,
        "errors": raw["errors"],
        "error_samples": raw["error_samples"],
        "rps": raw["rps"],
        "p50_us": raw["p50_us"],
        "p90_us": raw["p90_us"],
        "p99_us": raw["p99_us"],
        "max_us": raw["max_us"],
        "loadgen_cpu_s": cpu,
    }


def run_python(spec: LoadSpec) -> dict[str, Any]:
    cpu0 = _children_cpu()
    out = subprocess.run(
        loadgen_command(spec),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=spec.duration + 60,
        check=False,
    )
    return parse_loadgen(out.stdout + out.stderr, _children_cpu() - cpu0)


def run_load(spec: LoadSpec, prefer_wrk: bool = True) -> dict[str, Any]:
    """Closed loop with wrk when installed (and wanted), otherwise our asyncio generator."""
    if spec.mode == "closed" and prefer_wrk and wrk_path():
        return run_wrk(spec)
    return run_python(spec)


class BackgroundLoad:
    """Our load generator running until stopped (for load during redeploys)."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.proc: subprocess.Popen[str] | None = None
        self._cpu0 = 0.0

    def start(self) -> BackgroundLoad:
        self._cpu0 = _children_cpu()
        self.proc = subprocess.Popen(
            loadgen_command(self.spec, duration=0),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return self

    def stop(self) -> dict[str, Any]:
        assert self.proc is not None
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=60)
        return parse_loadgen(out, _children_cpu() - self._cpu0)
