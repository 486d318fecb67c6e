"""The first deploy in a fresh Ray cluster: plughost-ray against Ray's own ``serve.run``.

``python -m bench.ray_first [--rounds 3] [--out FILE.json]`` (``make bench`` calls :func:`run`)

Each round starts both sides from nothing, one after the other (A B A B: the machine's noise
falls on both), and times the same thing on each:

- Ray Serve (``bench.ray_host``, default variant, ``num_cpus=2`` as plughost's own local Ray
  on this machine): a private ``ray.init`` and ``serve.start`` (reported apart, not counted),
  then ``serve.run`` of ``bench.ray_app.PluginIngress`` over hash16 as the cluster's first
  application, timed from the command until the route answers a call with 200 (``serve.run``
  returns once the application is RUNNING; its own seconds are kept too).
- plughost-ray (``plughost serve`` with ``PLUGHOST_BACKEND=ray``, a fresh home, its own local
  Ray): the server starts Ray and Serve in the background; their start (until the server's
  replica directory actor is up, the last step of its connection) is reported apart and not
  counted. Then hash16 is uploaded and deployed: the deploy POST until the status says
  ``deployed`` (polled every 10 ms), and the route answering a call with 200 right after
  (``deployed`` promises it does; a round where it does not is an error).

After the first, each side deploys once more in the same cluster, reported beside it: a
second ``serve.run`` (another application, until its route answers) and a blue-green
redeploy of the plugin on plughost (until its new release is ``deployed``).

The goals row ``ray_first_deploy`` compares the medians.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from bench import procstat
from bench.plughost_sys import EXAMPLES, BenchError, PlughostServer, zip_plugin
from bench.ray_sys import RayServeHost, ray_available

log = logging.getLogger("bench")

PLUGIN = EXAMPLES / "hash_embedder"
BODY = {"inputs": {"text": "hello"}, "parameters": {}}
APP = "first"
RAY_UP_TIMEOUT_S = 180.0
# the last step of the server's connection to Ray (plughost.backends.ray.serve._connected):
# its replica directory actor, whose process title names the class
DIRECTORY_TITLE = "ReplicaDirectory"


def _answer_until_ok(url: str, headers: dict[str, str], timeout: float = 120.0) -> int:
    """POST the call until it answers 200; returns the number of tries."""
    deadline = time.monotonic() + timeout
    tries = 0
    with httpx.Client(timeout=30) as client:
        while True:
            tries += 1
            try:
                if client.post(url, json=BODY, headers=headers).status_code == 200:
                    return tries
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"{url} did not answer 200 in {timeout:.0f} s")
            time.sleep(0.005)


def serve_run_round(work: Path, index: int) -> dict[str, Any]:
    """One fresh Ray + Serve, its first ``serve.run``, until the route answers."""
    host = RayServeHost("default", num_cpus=2, log_dir=work / "logs")
    t_start = time.perf_counter()
    try:
        host.start()
        started = time.perf_counter() - t_start
        t0 = time.perf_counter()
        serve_run_s = host.deploy(APP, PLUGIN)
        _answer_until_ok(host.app_url(APP), {})
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        host.deploy(APP + "2", PLUGIN)  # a second application beside the first
        _answer_until_ok(host.app_url(APP + "2"), {})
        return {
            "first_deploy_s": first_s,
            "next_deploy_s": time.perf_counter() - t0,
            "serve_run_s": serve_run_s,
            "ray_init_s": float(host.ready_info.get("ray_init_s", 0.0)),
            "serve_start_s": float(host.ready_info.get("serve_start_s", 0.0)),
            "start_s": started,
        }
    finally:
        host.stop()


def _wait_ray_up(server: PlughostServer, timeout: float = RAY_UP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not procstat.find_descendants([server.pid], DIRECTORY_TITLE):
        if server.proc is not None and server.proc.poll() is not None:
            raise BenchError(f"plughost exited while starting Ray:\n{server.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"plughost's Ray did not come up in {timeout:.0f} s")
        time.sleep(0.05)


def plughost_round(work: Path, index: int, src: Path | None = None) -> dict[str, Any]:
    """One fresh plughost-ray server (and its own Ray), its first deploy; ``src``: run the
    plughost package found there instead (another revision, for a before/after)."""
    extra = {"PLUGHOST_BACKEND": "ray"}
    if src is not None:
        extra["PYTHONPATH"] = str(src)  # the server's Ray workers inherit it
    server = PlughostServer(
        work / f"plughost-ray-first-{'base-' if src else ''}{index}", extra_env=extra
    )
    t_start = time.perf_counter()
    members: list[int] = []
    try:
        server.start(timeout=120)
        healthy = time.perf_counter() - t_start
        _wait_ray_up(server)
        started = time.perf_counter() - t_start
        members = procstat.tree([server.pid])
        pid = server.upload("bench_first", zip_plugin(PLUGIN))
        seconds = server.deploy_and_wait(pid, timeout=300)
        tries = _answer_until_ok(server.route_url(pid), {"Authorization": f"Bearer {server.key}"})
        if tries != 1:
            raise BenchError(f"`deployed` before the route answered ({tries} tries)")
        redeploy_s = server.deploy_and_wait(pid, timeout=300)  # blue-green, a new release
        return {
            "first_deploy_s": seconds,
            "next_deploy_s": redeploy_s,
            "healthz_s": healthy,
            "start_s": started,
        }
    finally:
        if not members and server.proc is not None:
            members = procstat.tree([server.pid])
        server.stop(timeout=60)
        for pid in members:  # whatever of its Ray outlived the server
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def run(work: Path, rounds: int, baseline_src: Path | None = None) -> dict[str, Any]:
    """``rounds`` interleaved rounds; ``{"ray_first": {...}}`` for latest.json.
    ``baseline_src``: a third side, plughost-ray from that source folder (before/after)."""
    why_not = ray_available()
    if why_not:
        return {"ray_first": {"skipped": why_not}}
    out: dict[str, Any] = {"plughost_ray": [], "serve_run": [], "errors": []}
    sides: list[tuple[str, Any]] = [
        ("serve_run", serve_run_round),
        ("plughost_ray", plughost_round),
    ]
    if baseline_src is not None:
        out["plughost_ray_base"] = []
        sides.append(("plughost_ray_base", partial(plughost_round, src=baseline_src)))
    began = time.perf_counter()
    for i in range(rounds):
        for name, fn in sides:
            try:
                res = fn(work, i)
            except Exception as exc:  # noqa: BLE001 - a failed round is reported, not fatal
                out["errors"].append(f"{name} round {i}: {type(exc).__name__}: {exc}")
                log.warning("first deploy, %s round %d failed: %s", name, i, exc)
                continue
            out[name].append(res)
            log.info("first deploy in a fresh cluster, %s round %d: %s", name, i, res)
    for name in ("plughost_ray", "serve_run", "plughost_ray_base"):
        if name not in out:
            continue
        values = [r["first_deploy_s"] for r in out[name]]
        out[f"{name}_median_s"] = statistics.median(values) if values else None
        values = [r["next_deploy_s"] for r in out[name]]
        out[f"{name}_next_median_s"] = statistics.median(values) if values else None
    out["wall_s"] = time.perf_counter() - began
    return {"ray_first": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ray-first.json"))
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="also time plughost-ray run from this folder (holding a `plughost` package)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from bench.systems import new_work_dir

    res = run(new_work_dir(args.work), args.rounds, args.baseline_src)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    from bench import ray_goals

    print(ray_goals.ray_first_deploy(res))
    first = res["ray_first"]
    for name in ("serve_run", "plughost_ray", "plughost_ray_base"):
        if first.get(f"{name}_median_s") is not None:
            print(
                f"{name}: first deploy median {first[f'{name}_median_s']:.3f} s, "
                f"the next one {first[f'{name}_next_median_s']:.3f} s"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
