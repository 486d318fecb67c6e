"""The Ray figures alone: plughost-ray beside Ray Serve tuned, in one run (issue 15).

``python -m bench.ray_compare [--plugins hash16,hash384,minilm] [--out FILE.json]``

A few minutes instead of ``make bench``'s ten: only the two Ray systems are started, and
the same bench functions as the full run measure them (closed loop at c=1, 8, 32, 64,
idle CPU, deploy -> deployed against ``serve.run`` of the same class on the tuned Serve,
redeploys, blue-green redeploys under load on plughost-ray, and, once both are stopped, the
first deploy in a fresh cluster on each side, ``bench.ray_first``). The JSON it writes has
the shape of the full run's ``latest.json`` parts it fills, so ``bench.report`` reads it
(``python -m bench.ray_compare --render FILE.json`` prints the Ray goal rows and table).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import controlplane, dataplane, ray_first, ray_goals
from bench.load import wrk_path
from bench.settings import Profile
from bench.systems import (
    PLUGINS,
    Systems,
    minilm_available,
    new_work_dir,
    setup_plughost_ray,
    setup_ray,
)

log = logging.getLogger("bench")

POINTS = {"hash16": (1, 8, 32, 64), "hash384": (1, 32), "minilm": (1, 32)}


def profile_for(plugins: list[str], duration_s: float, rounds: int, deploys: int) -> Profile:
    return Profile(
        name="ray-compare",
        points={p: POINTS[p] for p in plugins},
        open_loop={},
        duration_s=duration_s,
        rounds=rounds,
        warmup_s=1.0,
        ray_variants=("tuned",),
        plughost_ray=True,
        alias_plugins=(),
        deploy_n=0,
        ray_deploy_n=deploys,
        plughost_ray_deploy_n=deploys,
        redeploy_n=deploys,
        bluegreen_n=10,
        bluegreen_c=16,
        status_deployments=0,
        status_c=0,
        status_duration_s=0,
        queue_n=0,
        profile_s=0,
    )


def deploy_times(systems: Systems, profile: Profile) -> dict[str, Any]:
    """plughost-ray deploy -> deployed and serve.run on the tuned Serve, interleaved."""
    out: dict[str, Any] = {"plughost": [], "ray_serve_run": [], "plughost_ray": [], "errors": []}
    host = systems.ray_hosts.get("tuned")
    server = systems.plughost_ray
    ids = (
        controlplane.upload_many(
            server, [f"bench_rdeploy_{i}" for i in range(profile.plughost_ray_deploy_n)], 2
        )
        if server is not None
        else []
    )
    for i in range(profile.ray_deploy_n):
        if host is not None:
            app = f"deploytime{i}"
            out["ray_serve_run"].append(host.deploy(app, PLUGINS["hash16"]))
            host.delete(app)
        if server is not None and i < len(ids):
            out["plughost_ray"].append(server.deploy_and_wait(ids[i]))
        log.info(
            "deploy %d: serve.run %s plughost-ray %s",
            i,
            out["ray_serve_run"][-1:],
            out["plughost_ray"][-1:],
        )
    if server is not None and ids:
        out["plughost_ray_redeploy"] = controlplane.redeploy_times(
            server, ids[0], profile.redeploy_n
        )
        controlplane.undeploy_many(server, ids)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plugins", default="hash16,hash384,minilm")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--deploys", type=int, default=5)
    parser.add_argument("--no-bluegreen", action="store_true")
    parser.add_argument(
        "--first-rounds",
        type=int,
        default=3,
        help="rounds of the first deploy in a fresh cluster (bench.ray_first), after the rest",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/ray-compare.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    plugins = [p for p in args.plugins.split(",") if p]
    if "minilm" in plugins and minilm_available():
        plugins.remove("minilm")
    profile = profile_for(plugins, args.duration, args.rounds, args.deploys)
    prefer_wrk = wrk_path() is not None
    systems = Systems(work=new_work_dir(None))
    res: dict[str, Any] = {"meta": {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}
    t0 = time.perf_counter()
    try:
        setup_ray(systems, "tuned", plugins)
        setup_plughost_ray(systems, plugins)
        res["setup"] = systems.setup_seconds
        res["skipped"] = systems.skipped
        dataplane.warm(systems.endpoints, profile.warmup_s, prefer_wrk)
        res["idle_cpu"] = dataplane.idle_cpu(systems, 3.0)
        res["runs"] = dataplane.run_matrix(systems, profile, prefer_wrk)
        res["summary"] = dataplane.summarize(res["runs"])
        res["deploy"] = deploy_times(systems, profile)
        if systems.plughost_ray is not None and not args.no_bluegreen:
            res["bluegreen_ray"] = controlplane.redeploys_under_load(
                systems.plughost_ray, profile.bluegreen_n, profile.bluegreen_c
            )
    finally:
        systems.stop_all()
        if args.first_rounds:  # fresh clusters of their own, once the others are stopped
            res.update(ray_first.run(systems.work / "ray_first", args.first_rounds))
        others = [r["other_cpu_cores"] for r in res.get("runs", []) if "other_cpu_cores" in r]
        res["meta"]["other_cpu_cores_median"] = statistics.median(others) if others else 0.0
        res["meta"]["wall_s"] = time.perf_counter() - t0
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1, default=str))
    print(render(res))
    return 0


def render(res: dict[str, Any]) -> str:
    """The side-by-side table of a ray-compare run (median over rounds)."""
    lines = [
        (
            "| plugin | load | plughost-ray req/s (p50 ms, CPU µs/req) | "
            "Ray Serve tuned req/s (p50 ms, CPU µs/req) | req/s ratio |"
        ),
        "|---|---|---|---|---:|",
    ]
    for plugin, points in res.get("summary", {}).items():
        for point, systems in points.items():
            ph, ray = systems.get("plughost-ray"), systems.get("ray-serve-tuned")

            def cell(c: dict[str, Any] | None) -> str:
                if not c:
                    return "-"
                return (
                    f"{c.get('rps', 0):,.0f} ({c.get('p50_us', 0) / 1000:.2f}, "
                    f"{c.get('cpu_us_per_req', 0):,.0f})"
                )

            ratio = (ph["rps"] / ray["rps"]) if ph and ray and ray.get("rps") else None
            lines.append(
                f"| {plugin} | {point} | {cell(ph)} | {cell(ray)} | "
                f"{'-' if ratio is None else f'{ratio:.2f}x'} |"
            )
    idle = res.get("idle_cpu", {})
    lines.append("")
    lines.append("idle CPU (cores): " + ", ".join(f"{k} {v:.3f}" for k, v in idle.items()))
    dep = res.get("deploy", {})
    for key in ("ray_serve_run", "plughost_ray", "plughost_ray_redeploy"):
        if dep.get(key):
            lines.append(f"{key}: median {statistics.median(dep[key]):.3f} s of {dep[key]}")
    first = res.get("ray_first", {})
    for key in ("serve_run", "plughost_ray"):
        if first.get(key):
            values = [round(r["first_deploy_s"], 3) for r in first[key]]
            lines.append(f"first deploy in a fresh cluster, {key}: {values}")
    lines += ["", "| goal (issue 15) | measured | verdict |", "|---|---|---|"]
    for row in ray_goals.ROWS:
        measured, met = row[1](res)
        verdict = "n/a" if met is None else ("MET" if met else "MISSED")
        lines.append(f"| {row[0]} | {measured} | {verdict} |")
    bg = res.get("bluegreen_ray")
    if bg:
        lines.append(
            f"bluegreen on Ray: {bg['failed']} failed of {bg['requests']}, "
            f"{bg['rps']:.0f} req/s, errors {bg.get('errors')}"
        )
    return "\n".join(lines)


if __name__ == "__main__" and "--render" in sys.argv:
    print(render(json.loads(Path(sys.argv[-1]).read_text())))
elif __name__ == "__main__":
    raise SystemExit(main())
