"""The cost of the cgroup layer (issue 28): replica start and request latency with each
replica in its cgroup (``PLUGHOST_CGROUPS=auto``) against the address-space rlimit alone
(``PLUGHOST_CGROUPS=off``), side by side.

Two ``plughost serve`` processes, one per layer, run at once on fresh homes, both without a
replica pool (every deploy starts a replica process: the shell that enters the cgroup, the
cgroup's creation and removal are then in every start). Rounds alternate the layers:
- replica start: an undeployed hash16 deployed again, seconds from the deploy POST to the
  status ``deployed`` (a new replica process each time);
- latency: ``calls`` sequential calls (concurrency 1) to the deployed replica, the p50.
Reported as medians over the rounds and as ratios cgroup / rlimit (1.00: no cost).

Run by hand: ``python -m bench.cgroups [--rounds 5 --calls 300]``; writes
bench/results/cgroups.json. ``bench.run`` calls :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.load import BODY
from bench.plughost_sys import PlughostServer, zip_plugin
from bench.systems import PLUGINS

RESULTS = Path(__file__).resolve().parent / "results" / "cgroups.json"
LAYERS = {"cgroup": "auto", "rlimit": "off"}


def _p50_ms(server: PlughostServer, plugin_id: str, calls: int) -> float:
    url = server.route_url(plugin_id)
    headers = {"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"}
    times: list[float] = []
    with httpx.Client(timeout=60) as client:
        for i in range(calls + 10):
            t0 = time.perf_counter()
            r = client.post(url, content=BODY, headers=headers)
            elapsed = time.perf_counter() - t0
            r.raise_for_status()
            if i >= 10:  # the first calls warm the connection and the replica
                times.append(elapsed)
    return statistics.median(times) * 1000


def _round(server: PlughostServer, plugin_id: str, calls: int) -> dict[str, float]:
    server.undeploy(plugin_id)
    start_s = server.deploy_and_wait(plugin_id)
    return {"start_s": start_s, "p50_ms": _p50_ms(server, plugin_id, calls)}


def run(work: Path, rounds: int = 3, calls: int = 200) -> dict[str, Any]:
    """Both layers, ``rounds`` alternating rounds; ``{"cgroups": {...}}``."""
    servers: dict[str, PlughostServer] = {}
    plugin_ids: dict[str, str] = {}
    archive = zip_plugin(PLUGINS["hash16"])
    try:
        for name, mode in LAYERS.items():
            server = PlughostServer(
                work / name, extra_env={"PLUGHOST_CGROUPS": mode, "PLUGHOST_REPLICA_POOL": "0"}
            ).start()
            servers[name] = server
            layer = server.client.get("/healthz").json()["sandbox"].get("memory_limit")
            if name == "cgroup" and not str(layer).startswith("cgroup"):
                return {"cgroups": {"skipped": f"cgroups are not writable here ({layer})"}}
            plugin_ids[name] = server.upload("bench_hash16", archive)
            server.deploy_and_wait(plugin_ids[name])
        seen: dict[str, list[dict[str, float]]] = {name: [] for name in LAYERS}
        for i in range(rounds):
            order = list(LAYERS) if i % 2 == 0 else list(reversed(LAYERS))
            for name in order:
                seen[name].append(_round(servers[name], plugin_ids[name], calls))
        layers = {
            name: servers[name].client.get("/healthz").json()["sandbox"].get("memory_limit")
            for name in LAYERS
        }
    finally:
        for server in servers.values():
            server.stop()
    out: dict[str, Any] = {"rounds": rounds, "calls": calls, "layers": layers}
    for key in ("start_s", "p50_ms"):
        medians = {name: statistics.median(r[key] for r in seen[name]) for name in LAYERS}
        out[key] = medians
        out[f"{key}_ratio"] = medians["cgroup"] / medians["rlimit"]
    out["samples"] = seen
    return {"cgroups": out}


def judge(res: dict[str, Any]) -> tuple[str, bool | None]:
    """The report's row: the two ratios (reported, no goal)."""
    cg = res.get("cgroups") or {}
    if "start_s" not in cg:
        return (str(cg.get("skipped", "not measured")), None)
    measured = (
        f"replica start {cg['start_s']['cgroup']:.3f} s vs {cg['start_s']['rlimit']:.3f} s "
        f"({cg['start_s_ratio']:.2f}x); p50 at c=1 {cg['p50_ms']['cgroup']:.2f} ms vs "
        f"{cg['p50_ms']['rlimit']:.2f} ms ({cg['p50_ms_ratio']:.2f}x)"
    )
    return (measured, None)


def markdown(res: dict[str, Any]) -> list[str]:
    """The report's section (bench.report.render_markdown)."""
    cg = res.get("cgroups") or {}
    return report(cg).splitlines() + [""] if "start_s" in cg else []


def report(cg: dict[str, Any]) -> str:
    start, p50 = cg["start_s"], cg["p50_ms"]
    intro = (
        f"hash16, {cg['rounds']} alternating rounds, {cg['calls']} calls at c=1 per round; "
        f"layers as /healthz names them: {cg['layers']}."
    )
    lines = [
        "## The cost of the cgroup layer (issue 28)",
        "",
        intro,
        "",
        "| | cgroup | rlimit only | ratio |",
        "|---|---:|---:|---:|",
        f"| replica start (deploy -> deployed, s) | {start['cgroup']:.3f} | "
        + f"{start['rlimit']:.3f} | {cg['start_s_ratio']:.2f} |",
        f"| request latency p50 at c=1 (ms) | {p50['cgroup']:.2f} | "
        + f"{p50['rlimit']:.2f} | {cg['p50_ms_ratio']:.2f} |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="plughost-bench-cgroups-") as tmp:
        res = run(Path(tmp), args.rounds, args.calls)["cgroups"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))
    if "start_s" in res:
        print(report(res))
    print(judge({"cgroups": res})[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
