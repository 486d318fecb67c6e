"""Realtime latency while a large archive uploads, by hand:

    .venv/bin/python -m bench.upload_stall [--out bench/results/upload_stall.json]

One small plugin is deployed and called back to back by one client (closed loop): first
quiet, then while a 400-module archive goes through each upload route, multipart
(``POST /plugins``) and presigned (``POST /uploads``, ``PUT``, ``POST .../confirm``). Each
phase reports calls, failed calls, p50, p99 and max latency; the goal: no call fails, and
during each upload max <= 10 x quiet p99 + 100 ms. The server runs with its loop watchdog on
(``PLUGHOST_LOOP_STALL_MS=100``); the stall lines it logged are counted.

``bench.run`` (``make bench``) calls :func:`run` on a server of its own and merges the result
into ``latest.json`` (the ``upload_stall`` goal)."""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.plughost_sys import NS, BenchError, PlughostServer

MANIFEST = 'feature_extractor_name = "{name}"\nversion = "1.0.0"\nfeatures = []\n'
PIPELINE = "def build_steps(extractor_request=None, **kw):\n    return {'steps': []}\n"
REALTIME = """
class Service:
    def run_inference(self, inputs, parameters):
        return {"echo": inputs.get("text", "")}

def get_inference_service(**kwargs):
    return Service()
"""
# A module of the large archive: something for the intake to unpack, hash and scan.
MODULE = '''"""Generated module {i}."""
import math


class Item{i}:
    def __init__(self, name, weight=1.0):
        self.name, self.weight = name, weight
'''
FUNCTION = """

def transform_{i}_{j}(values, offset={j}):
    total = 0.0
    for k, v in enumerate(values):
        if k % 3 == 0:
            total += math.sqrt(abs(v)) + offset
        elif k % 3 == 1:
            total -= v * {j} / (k + 1)
        else:
            total += sum(x for x in range(k) if x % 2) / (k + 1)
    return {{"module": {i}, "fn": {j}, "total": total, "items": [Item{i}("a", total)]}}
"""
STALL_PREFIX = "loop stall: "


def archive(name: str, modules: int = 0) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.py", MANIFEST.format(name=name))
        zf.writestr("pipeline.py", PIPELINE)
        zf.writestr("realtime.py", REALTIME)
        if modules:
            zf.writestr("processors/__init__.py", "")
        for i in range(modules):
            body = MODULE.format(i=i) + "".join(FUNCTION.format(i=i, j=j) for j in range(5))
            zf.writestr(f"processors/mod_{i:03d}.py", body)
    return buf.getvalue()


def _percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def measure(server: PlughostServer, route: str, during: Callable[[], None]) -> dict[str, Any]:
    """Call ``route`` back to back from one client while ``during()`` runs in this thread."""
    latencies: list[float] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {server.key}"}, timeout=120) as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    r = c.post(route, json={"inputs": {"text": "hi"}, "parameters": {}})
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:120]}")
                except httpx.HTTPError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                latencies.append((time.perf_counter() - t0) * 1000)

    caller = threading.Thread(target=load, daemon=True)
    caller.start()
    started = time.perf_counter()
    try:
        during()
    finally:
        took = time.perf_counter() - started
        stop.set()
        caller.join(180)
    ms = sorted(latencies)
    return {
        "seconds": round(took, 2),
        "calls": len(ms),
        "failed": len(failures),
        "failures": failures[:5],
        "p50_ms": round(_percentile(ms, 0.5), 2) if ms else None,
        "p99_ms": round(_percentile(ms, 0.99), 2) if ms else None,
        "max_ms": round(ms[-1], 2) if ms else None,
    }


def upload_multipart(server: PlughostServer, name: str, data: bytes) -> None:
    server.upload(name, data)


def upload_presigned(server: PlughostServer, name: str, data: bytes) -> None:
    c = server.client
    up = c.post(f"/v1/namespaces/{NS}/plugins/uploads", json={"name": name, "version": "1.0.0"})
    if up.status_code != 200:
        raise BenchError(f"presign of {name}: {up.status_code} {up.text}")
    put = c.put(up.json()["presigned_url"], content=data)
    if put.status_code != 200:
        raise BenchError(f"PUT of {name}: {put.status_code} {put.text}")
    path = f"/v1/namespaces/{NS}/plugins/uploads/{up.json()['upload_id']}/confirm"
    done = c.post(path, json={"etag": put.headers["etag"]})
    if done.status_code != 200 or not done.json().get("success"):
        raise BenchError(f"confirm of {name}: {done.status_code} {done.text[:300]}")


def run(home: Path, quiet_s: float = 5.0, modules: int = 400) -> dict[str, Any]:
    """``{"upload_stall": {"quiet": ..., "multipart": ..., "presign_confirm": ..., ...}}``."""
    server = PlughostServer(home, extra_env={"PLUGHOST_LOOP_STALL_MS": "100"}).start()
    try:
        pid = server.upload("bench_live", archive("bench_live"))
        server.deploy_and_wait(pid)
        route = server.alias_url("bench_live")
        measure(server, route, lambda: time.sleep(1.0))  # warm the connection and the replica
        result: dict[str, Any] = {"modules": modules}
        result["quiet"] = measure(server, route, lambda: time.sleep(quiet_s))
        big = archive("bench_big_form", modules)
        result["archive_bytes"] = len(big)
        result["multipart"] = measure(
            server, route, lambda: upload_multipart(server, "bench_big_form", big)
        )
        big = archive("bench_big_url", modules)
        result["presign_confirm"] = measure(
            server, route, lambda: upload_presigned(server, "bench_big_url", big)
        )
    finally:
        server.stop()
    log = server.log_path.read_text(errors="replace") if server.log_path else ""
    stalls = [line for line in log.splitlines() if STALL_PREFIX in line]
    result["loop_stalls"] = len(stalls)
    result["loop_stall_lines"] = [s[s.index(STALL_PREFIX) :][:300] for s in stalls[:5]]
    return {"upload_stall": result}


ROUTES = ("multipart", "presign_confirm")


def judge(res: dict[str, Any]) -> tuple[str, bool | None]:
    """The GOALS row (bench.report): no call fails; max <= 10 x quiet p99 + 100 ms."""
    table = res.get("upload_stall") or {}
    quiet = table.get("quiet")
    if not quiet or not quiet.get("p99_ms"):
        return "not measured (python -m bench.upload_stall)", None
    bound = 10 * quiet["p99_ms"] + 100
    quiet_text = f"quiet p99 {quiet['p99_ms']:.1f} ms, max {quiet['max_ms']:.1f} ms"
    parts = [f"{table.get('modules')} modules; {quiet_text}"]
    met = quiet["failed"] == 0
    for name in ROUTES:
        phase = table.get(name) or {}
        if not phase.get("calls"):
            return f"{name}: no call measured", False
        parts.append(
            f"{name}: p99 {phase['p99_ms']:.1f} ms, max {phase['max_ms']:.1f} ms, "
            f"{phase['failed']} failed of {phase['calls']} ({phase['seconds']} s upload)"
        )
        met = met and phase["failed"] == 0 and phase["max_ms"] <= bound
    parts.append(f"bound {bound:.0f} ms; {table.get('loop_stalls', 0)} loop stalls logged")
    return "; ".join(parts), met


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("bench/results/upload_stall.json"))
    parser.add_argument("--quiet-seconds", type=float, default=5.0)
    parser.add_argument("--modules", type=int, default=400)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-upload-stall-"))
    res = run(home, args.quiet_seconds, args.modules)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    measured, met = judge(res)
    print(json.dumps(res["upload_stall"], indent=2))
    print({True: "MET", False: "MISSED", None: "n/a"}[met], measured)


if __name__ == "__main__":
    main()
