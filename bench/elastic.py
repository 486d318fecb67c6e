"""Elastic replicas on the local backend (issue 17), run by hand:

    .venv/bin/python -m bench.elastic [--out bench/results/elastic.json] [--zero-only]

``--zero-only``: only hash16 from zero with the warm spare and Ray Serve's scale-from-zero,
side by side, merged into the existing ``--out`` (its other figures kept).

- cold start: the hash embedder (hash16) with ``min_replicas: 0`` and
  ``scale_to_zero_after_s: 0.5``; each of 10 rounds waits until it is at zero and then
  ``SETTLE_S`` (the warm spare's own start, which a real idle period of minutes covers), then
  times one call from send to answer (median of 10). Side by side: the same on a server with
  ``PLUGHOST_WARM_SPARE=false`` (a replica started from nothing on the call), and a fresh
  replica start: deploy -> deployed of a fresh upload (median of 5; replica start plus health
  and smoke calls).
- scale 1 -> 4: a plugin whose call takes 50 ms, ``min_replicas: 1, max_replicas: 4,
  target_ongoing_requests: 1``; seconds from a step in load (8 threads) to 4 ready replicas.
- Ray Serve's scale-from-zero (``bench.ray_zero``): the same hash16 plugin class the other
  Ray figures serve, ``min_replicas=0, max_replicas=1``, short delays; each round waits until
  Serve reports no replica, then times one call through Serve's HTTP proxy (median of
  ``ray_rounds``), after plughost's servers have stopped. Skipped with a note without Ray.
- MiniLM from zero with the spare (median of 5), against its model load (the plugin's load in
  a fresh interpreter inside the sandbox wrapper once its dependencies are imported) and
  against the whole load with those imports, alternating per round;
- where a cold start's time goes (``bench.cold_start``: interpreter, sandbox, imports,
  plugin load, the whole replica start), without the server.

``bench.run`` (``make bench``) calls :func:`run` after its other figures, on a server of its
own, and merges the result into ``latest.json`` (the ``cold_start`` and ``scale_up`` goals).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

from bench import cold_start, ray_zero
from bench.plughost_sys import EXAMPLES, NS, PlughostServer
from bench.systems import minilm_available

SETTLE_S = 2.0

SLOW = """
import time

class Service:
    def run_inference(self, inputs, parameters):
        time.sleep(0.05)
        return {"ok": True}

def get_inference_service(**kwargs):
    return Service()
"""


def hash_zip(serve_config: dict[str, Any], folder: Path = EXAMPLES / "hash_embedder") -> bytes:
    """The example plugin in ``folder`` packed with ``serve_config`` (it wins over the
    manifest's own)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
                text = p.read_bytes()
                if p.name == "manifest.py":
                    text += f"\nserve_config = {serve_config!r}\n".encode()
                zf.writestr(p.relative_to(folder).as_posix(), text)
    return buf.getvalue()


def slow_zip(name: str) -> bytes:
    buf = io.BytesIO()
    cfg = {
        "min_replicas": 1,
        "max_replicas": 4,
        "target_ongoing_requests": 1,
        "downscale_delay_s": 60,
    }
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(
            "manifest.py",
            f'feature_extractor_name = "{name}"\nversion = "1.0.0"\n'
            f"features = []\nserve_config = {cfg!r}\n",
        )
        zf.writestr(
            "pipeline.py",
            "def build_steps(extractor_request=None, **kw):\n    return {'steps': []}\n",
        )
        zf.writestr("realtime.py", SLOW)
    return buf.getvalue()


def replicas(server: PlughostServer, pid: str) -> dict[str, int]:
    return dict(server.status(pid).get("replicas") or {})


def from_zero(
    server: PlughostServer,
    rounds: int,
    settle_s: float,
    name: str = "bench_zero",
    archive: bytes | None = None,
) -> list[float]:
    """Seconds from send to answer of a call at zero, ``rounds`` times (hash16 unless
    ``archive`` is given)."""
    zero = {"min_replicas": 0, "scale_to_zero_after_s": 0.5}
    pid = server.upload(name, archive or hash_zip(zero))
    server.deploy_and_wait(pid)
    times = []
    body = {"inputs": {"text": "hello"}, "parameters": {}}
    for _ in range(rounds):
        while replicas(server, pid).get("target") != 0:
            time.sleep(0.05)
        time.sleep(settle_s)
        started = time.monotonic()
        resp = server.client.post(f"/inference/{NS}/{name}", json=body)
        times.append(time.monotonic() - started)
        assert resp.status_code == 200, resp.text
    return times


def cold_starts(server: PlughostServer, rounds: int, cold: list[float]) -> dict[str, Any]:
    """From zero with the warm spare (``server``'s default), against ``cold`` (no spare)
    and against fresh deploys."""
    times = from_zero(server, rounds, SETTLE_S)
    fresh = []
    for i in range(min(5, rounds)):
        fid = server.upload(f"bench_fresh{i}", hash_zip({"num_replicas": 1}))
        fresh.append(server.deploy_and_wait(fid))
    return {
        "cold_start_s": times,
        "cold_start_median_s": statistics.median(times),
        "cold_start_no_spare_s": cold,
        "cold_start_no_spare_median_s": statistics.median(cold),
        "fresh_deploy_s": fresh,
        "fresh_deploy_median_s": statistics.median(fresh),
    }


def minilm_cold(server: PlughostServer, rounds: int) -> dict[str, Any]:
    """MiniLM from zero with the warm spare, against its model load: the plugin's load in a
    fresh interpreter inside the sandbox wrapper once its dependencies are imported (torch,
    sentence_transformers: what the spare imports ahead of need), the floor of a cold start
    that reuses them; and against the whole load, those imports included (a replica started
    from nothing pays it).

    They alternate, the loads then one cold call per round, after one load that is not
    counted (it warms the page cache for all): measured in blocks, whatever else ran on the
    machine in one block and not the other decided the comparison."""
    why_not = minilm_available()
    if why_not:
        return {"skipped": why_not}
    folder = EXAMPLES / "minilm_embedder"
    zero = {"min_replicas": 0, "scale_to_zero_after_s": 0.5, "num_cpus": 1, "memory_gb": 2}
    name = "bench_zero_minilm"
    pid = server.upload(name, hash_zip(zero, folder))
    server.deploy_and_wait(pid)
    cold_start.plugin_load_s(folder, 1)  # not counted: warms the page cache
    body = {"inputs": {"text": "hello"}, "parameters": {}}
    times, loads, own = [], [], []
    for _ in range(rounds):
        while replicas(server, pid).get("target") != 0:
            time.sleep(0.05)
        whole, after_deps = cold_start.plugin_load_pair(folder)
        loads.append(whole)
        own.append(after_deps)
        time.sleep(SETTLE_S)  # the spare's own start, as in from_zero
        started = time.monotonic()
        resp = server.client.post(f"/inference/{NS}/{name}", json=body)
        times.append(time.monotonic() - started)
        assert resp.status_code == 200, resp.text
    while replicas(server, pid).get("target") != 0:
        time.sleep(0.05)
    time.sleep(SETTLE_S)
    return {
        "spare_rss_mib": spare_rss_mib(int(server.status(pid)["release_id"])),
        "cold_start_s": times,
        "cold_start_median_s": statistics.median(times),
        "load_with_imports_each_s": loads,
        "load_with_imports_s": statistics.median(loads),
        "model_load_each_s": own,
        "model_load_s": statistics.median(own),
        "order": "alternating: the loads, then one cold call, per round",
    }


def spare_rss_mib(release_id: int, wait_s: float = 30.0) -> float | None:
    """Resident MiB of the release's warm spare once it has stopped growing (its imports
    done): what a group at zero still holds; None when no spare shows up."""
    deadline = time.monotonic() + wait_s
    last = None
    while time.monotonic() < deadline:
        rss = None
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if b"plughost.replica.spare" not in argv or not any(
                    f"/r{release_id}-".encode() in a for a in argv
                ):
                    continue
                status = (proc / "status").read_text()
            except OSError:
                continue
            kb = [line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")]
            rss = max(rss or 0.0, int(kb[0]) / 1024) if kb else rss
        if rss is not None and last is not None and abs(rss - last) < 1.0:
            return round(rss, 1)
        last = rss
        time.sleep(1.0)
    return None


def scale_up(server: PlughostServer) -> dict[str, Any]:
    pid = server.upload("bench_scale", slow_zip("bench_scale"))
    server.deploy_and_wait(pid)
    stop = threading.Event()
    failed = [0]

    def load() -> None:
        with httpx.Client(
            base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {server.key}"}
        ) as c:
            while not stop.is_set():
                r = c.post(f"/inference/{NS}/bench_scale", json={"inputs": {}})
                failed[0] += r.status_code != 200

    threads = [threading.Thread(target=load) for _ in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    took = None
    while time.monotonic() - started < 60:
        if replicas(server, pid).get("ready", 0) >= 4:
            took = time.monotonic() - started
            break
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(30)
    return {"scale_1_to_4_s": took, "failed": failed[0]}


def run(
    home: Path, rounds: int = 10, minilm_rounds: int = 5, ray_rounds: int | None = None
) -> dict[str, Any]:
    """Every figure of this module: ``cold`` (with ``breakdown`` and, unless ``ray_rounds``
    is 0, ``ray_zero``), ``scale`` and, with ``minilm_rounds``, ``cold_minilm``."""
    plain = PlughostServer(home / "no-spare", {"PLUGHOST_WARM_SPARE": "false"}).start()
    try:
        cold = from_zero(plain, rounds, 0.0)
    finally:
        plain.stop()
    server = PlughostServer(home / "spare").start()
    try:
        res = {"cold": cold_starts(server, rounds, cold), "scale": scale_up(server)}
        if minilm_rounds:
            res["cold_minilm"] = minilm_cold(server, minilm_rounds)
    finally:
        server.stop()
    res["cold"]["breakdown"] = cold_start.stages(max(3, rounds // 2))
    res["cold"]["ray_zero"] = ray_cold(home, rounds if ray_rounds is None else ray_rounds)
    return res


def ray_cold(home: Path, rounds: int) -> dict[str, Any]:
    if not rounds:
        return {"skipped": "disabled (ray_rounds=0, e.g. bench.run --no-ray)"}
    return ray_zero.run(home / "ray-zero", rounds)


def zero_only(home: Path, rounds: int, out: Path) -> dict[str, Any]:
    """hash16 from zero with the warm spare, then Ray Serve's scale-from-zero, merged into
    ``out``'s ``cold`` (the rest of it kept)."""
    server = PlughostServer(home / "spare").start()
    try:
        times = from_zero(server, rounds, SETTLE_S)
    finally:
        server.stop()
    res = json.loads(out.read_text()) if out.exists() else {}
    cold = res.setdefault("cold", {})
    cold.update(cold_start_s=times, cold_start_median_s=statistics.median(times))
    cold["ray_zero"] = ray_cold(home, rounds)
    return res


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("bench/results/elastic.json"))
    parser.add_argument("--zero-only", action="store_true")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-elastic-"))
    if args.zero_only:
        res = zero_only(home, args.rounds, args.out)
    else:
        res = run(home, args.rounds)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
