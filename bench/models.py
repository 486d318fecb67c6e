"""Namespace models: time to first answer of a replica that loads a 100 MB safetensors model,
cold and warm, and the memory of 4 replicas that map it against 4 that copy it.

One server (its own home and models cache), one model of ``size_mb`` MB (one float32
tensor of random bytes) uploaded once, and three plugins that each load it in their
constructor and read every weight once (a sum, as a first forward pass would):

- ``mmap``: ``load_namespace_model`` as it is (the tensors are views of the mapped file),
  one replica: the time to first answer, ``rounds`` times each of
  - cold: the model's files dropped from the page cache (``posix_fadvise DONTNEED`` on
    every file of its blob) before the deploy, so the replica reads them from disk;
  - warm: ``POST .../models/{id}/deploy`` (the preload) before the deploy;
  each from the deploy call to the first 200 of the plugin's route, with the seconds the
  constructor spent loading (answered by the plugin);
- ``mmap4``: the same code, 4 replicas;
- ``copy4``: 4 replicas that keep a private copy of the tensors (``clone``/``copy``): what
  every replica holding its own weights costs.

For the 4-replica plugins, each replica's RSS, PSS (shared pages split among their users)
and anonymous RSS are read from /proc; the sums of PSS are the machine's memory for the
weights: about one model for ``mmap4``, about four for ``copy4``.

Run by hand: ``python -m bench.models [--rounds 3] [--size-mb 100]``; writes
bench/results/models.json. ``bench.run`` calls :func:`run`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import tarfile
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

from bench import procstat
from bench.plughost_sys import NS, BenchError, PlughostServer, release_replica_pids

RESULTS = Path(__file__).resolve().parent / "results" / "models.json"
MODEL_NAME = "bench_weights"
MODEL_ID = f"{MODEL_NAME}_1_0_0"
REPLICAS = 4

REALTIME = '''
import time

try:  # the tensor library imported before the clock starts: its import is not the load
    import torch
except ImportError:
    import numpy

from shared.models.loader import load_namespace_model

MODEL_ID = "{model_id}"
PRIVATE = {private}


def _private(tensor):
    try:
        return tensor.clone()
    except AttributeError:
        return tensor.copy()


class RealtimeHandler:
    def __init__(self, **kwargs):
        started = time.perf_counter()
        weights = load_namespace_model(MODEL_ID)
        if PRIVATE:
            weights = {{k: _private(v) for k, v in weights.items()}}
        self.weights = weights
        self.total = float(sum(float(t.sum()) for t in weights.values()))
        self.load_s = time.perf_counter() - started

    async def predict(self, request):
        return {{"load_s": self.load_s, "tensors": len(self.weights)}}
'''

MANIFEST = '''
feature_extractor_name = "{name}"
version = "1.0.0"
description = "loads the benchmark's namespace model"
features = []
serve_config = {{"num_replicas": {replicas}}}
'''


def safetensors_file(size_mb: int) -> bytes:
    """One float32 tensor of ``size_mb`` MB of random bytes (its values do not matter)."""
    count = size_mb * 1024 * 1024 // 4
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [count], "data_offsets": [0, count * 4]}}
    ).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + random.randbytes(count * 4)


def model_archive(size_mb: int) -> bytes:
    raw = safetensors_file(size_mb)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("model.safetensors")
        info.size = len(raw)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def plugin_archive(name: str, replicas: int, private: bool) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.py", MANIFEST.format(name=name, replicas=replicas))
        zf.writestr("pipeline.py", "def build_steps(*args, **kwargs):\n    return {'steps': []}\n")
        zf.writestr("realtime.py", REALTIME.format(model_id=MODEL_ID, private=private))
    return buf.getvalue()


# -- steps ------------------------------------------------------------------------------------
def upload_model(server: PlughostServer, size_mb: int) -> dict[str, Any]:
    archive = model_archive(size_mb)
    t0 = time.perf_counter()
    resp = server.client.post(
        f"/v1/namespaces/{NS}/models",
        data={"name": MODEL_NAME, "version": "1.0.0", "model_format": "safetensors"},
        files={"file": ("weights.tar.gz", archive, "application/gzip")},
        timeout=600,
    )
    if resp.status_code != 200:
        raise BenchError(f"model upload: {resp.status_code} {resp.text}")
    took = time.perf_counter() - t0
    doc = server.client.get(f"/v1/namespaces/{NS}/models/{MODEL_ID}").json()["model"]
    return {"upload_s": took, "sha256": doc["model_hash"], "size_bytes": doc["size_bytes"]}


def evict(blob: Path) -> int:
    """Drop the blob's files from the page cache (no privilege needed for clean pages that
    no process maps)."""
    dropped = 0
    for path in blob.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)  # pages not yet written back (a fresh upload) are not dropped
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                dropped += path.stat().st_size
            finally:
                os.close(fd)
    return dropped


def resident_mb(blob: Path) -> float | None:
    """MB of the blob's files in the page cache (util-linux ``fincore``; None without it)."""
    tool = shutil.which("fincore")
    files = [str(p) for p in blob.rglob("*") if p.is_file()]
    if tool is None or not files:
        return None
    done = subprocess.run(
        [tool, "--bytes", "--noheadings", "--raw", "--output", "RES", *files],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        return None
    return round(sum(int(v) for v in done.stdout.split()) / 2**20, 1)


def first_answer(server: PlughostServer, plugin_id: str, timeout: float = 180.0) -> dict[str, Any]:
    """Deploy, then call the route until it answers 200: seconds from the deploy call, the
    deploy alone, and the load seconds the plugin measured."""
    t0 = time.perf_counter()
    server.deploy(plugin_id)
    server.wait_deployed(plugin_id, timeout=timeout)
    deployed = time.perf_counter() - t0
    body = {"inputs": {}, "parameters": {}}
    while True:
        resp = server.client.post(f"/inference/{NS}/custom_plugin_{plugin_id}", json=body)
        if resp.status_code == 200:
            break
        if time.perf_counter() - t0 > timeout:
            raise BenchError(f"{plugin_id}: no answer: {resp.status_code} {resp.text}")
        time.sleep(0.01)
    return {
        "first_answer_s": time.perf_counter() - t0,
        "deploy_s": deployed,
        "load_s": float(resp.json()["load_s"]),
    }


def undeploy_and_wait(server: PlughostServer, plugin_id: str, timeout: float = 60.0) -> None:
    server.undeploy(plugin_id)
    deadline = time.monotonic() + timeout
    while server.status(plugin_id)["status"] != "not_deployed":
        if time.monotonic() > deadline:
            raise BenchError(f"{plugin_id} still deployed after undeploy")
        time.sleep(0.05)


def replica_memory(server: PlughostServer, plugin_id: str) -> list[dict[str, int]]:
    """RSS, PSS and anonymous RSS (KiB) of each replica of the plugin's live release (the
    biggest process of each sandbox chain)."""
    release = server.status(plugin_id).get("release_id")
    # the server's replica records (a replica claimed from the pool keeps the pool's
    # command line, so its release id is not in it)
    roots = release_replica_pids(server.home, release)
    # one record per replica: the head of its sandbox chain (bwrap -> bwrap -> python)
    procs = procstat.all_processes()
    heads = [pid for pid in roots if pid in procs and procs[pid].ppid not in roots]
    out = []
    for head in heads:
        replica = max(procstat.tree([head], procs), key=procstat.rss_kb)
        out.append({
            "pid": replica,
            "rss_kb": procstat.rss_kb(replica),
            "pss_kb": procstat.pss_kb(replica),
            "anon_kb": _status_kb(replica, "RssAnon:"),
        })
    return out


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _memory_row(replicas: list[dict[str, int]]) -> dict[str, Any]:
    def mb(key: str) -> float:
        return round(sum(r[key] for r in replicas) / 1024, 1)

    return {
        "replicas": len(replicas),
        "pids": [r["pid"] for r in replicas],
        "rss_mb_each": [round(r["rss_kb"] / 1024, 1) for r in replicas],
        "pss_mb_each": [round(r["pss_kb"] / 1024, 1) for r in replicas],
        "anon_mb_each": [round(r["anon_kb"] / 1024, 1) for r in replicas],
        "rss_mb_sum": mb("rss_kb"),
        "pss_mb_sum": mb("pss_kb"),
        "anon_mb_sum": mb("anon_kb"),
    }


def memory_of(server: PlughostServer, plugin_id: str) -> dict[str, Any]:
    server.deploy_and_wait(plugin_id)
    for _ in range(REPLICAS * 2):  # every replica has answered once: all have loaded
        server.client.post(f"/inference/{NS}/custom_plugin_{plugin_id}", json={"inputs": {}})
    time.sleep(1.0)
    row = _memory_row(replica_memory(server, plugin_id))
    undeploy_and_wait(server, plugin_id)
    return row


# -- the run ----------------------------------------------------------------------------------
def run(work: Path, rounds: int = 3, size_mb: int = 100) -> dict[str, Any]:
    """The figures as ``{"models": {...}}`` (merged into bench.run's results)."""
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "models-cache"
    server = PlughostServer(
        home=work / "home", extra_env={"PLUGHOST_MODELS_CACHE_DIR": str(cache)}
    ).start()
    try:
        model = upload_model(server, size_mb)
        blob = cache / "blobs" / model["sha256"]
        ids = {
            kind: server.upload(f"bench_w{kind}", plugin_archive(f"bench_w{kind}", n, private))
            for kind, n, private in (("mmap", 1, False), ("mmap4", REPLICAS, False),
                                     ("copy4", REPLICAS, True))
        }
        cold: list[dict[str, Any]] = []
        warm: list[dict[str, Any]] = []
        preload_s: list[float] = []
        for _ in range(rounds):
            evict(blob)
            cold.append({"cached_mb": resident_mb(blob), **first_answer(server, ids["mmap"])})
            undeploy_and_wait(server, ids["mmap"])
            evict(blob)
            t0 = time.perf_counter()
            resp = server.client.post(f"/v1/namespaces/{NS}/models/{MODEL_ID}/deploy")
            if resp.status_code != 200:
                raise BenchError(f"model preload: {resp.status_code} {resp.text}")
            preload_s.append(time.perf_counter() - t0)
            warm.append({"cached_mb": resident_mb(blob), **first_answer(server, ids["mmap"])})
            undeploy_and_wait(server, ids["mmap"])
        shared = memory_of(server, ids["mmap4"])
        private = memory_of(server, ids["copy4"])
    finally:
        server.stop(timeout=60)
    return {"models": {
        "size_mb": size_mb,
        "model": model,
        "cold": _summary(cold),
        "warm": _summary(warm),
        "preload_s": [round(x, 3) for x in preload_s],
        "mmap4": shared,
        "copy4": private,
        "setup": (
            f"one {size_mb} MB safetensors model, local backend; first answer = deploy call "
            f"to the first 200, median of {rounds}; cold: pages dropped (fadvise), warm: "
            "preloaded (POST .../models/{id}/deploy)"
        ),
    }}


def _summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(samples)}
    out["cached_mb_before"] = [s["cached_mb"] for s in samples]
    for key in ("first_answer_s", "deploy_s", "load_s"):
        values = [s[key] for s in samples]
        out[key] = round(statistics.median(values), 3)
        out[f"{key}_all"] = [round(v, 3) for v in values]
    return out


def judge(res: dict[str, Any]) -> tuple[str, bool | None]:
    """The GOALS row (bench.report): reported figures, not a goal."""
    m = res.get("models") or {}
    if "cold" not in m:
        return "not measured (python -m bench.models)", None
    cold, warm, shared, private = m["cold"], m["warm"], m["mmap4"], m["copy4"]
    text = (
        f"first answer cold {cold['first_answer_s']:.2f} s (model load {cold['load_s']:.2f} s), "
        f"warm {warm['first_answer_s']:.2f} s (model load {warm['load_s']:.2f} s); "
        f"4 replicas: PSS {shared['pss_mb_sum']:.0f} MB mapping it vs "
        f"{private['pss_mb_sum']:.0f} MB with private copies, anonymous RSS each "
        f"{statistics.median(shared['anon_mb_each'] or [0]):.0f} vs "
        f"{statistics.median(private['anon_mb_each'] or [0]):.0f} MB"
    )
    return text, None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plughost-models-") as tmp:
        result = run(Path(tmp) / uuid.uuid4().hex[:6], args.rounds, args.size_mb)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
