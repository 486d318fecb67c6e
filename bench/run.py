"""The benchmark harness: ``python -m bench.run [--profile full|tiny] [--out DIR]``.

Starts every system, runs the request-path matrix and the control-plane runs, and writes
``latest.json``, ``latest.md`` and ``latest.png`` into ``--out`` (default bench/results).
See bench/README.md for what each run measures.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    batching,
    cgroups,
    controlplane,
    dataplane,
    elastic,
    models,
    multiserver,
    ray_first,
    restart,
    rollouts,
    startup,
    upload_stall,
    workers,
)
from bench.load import wrk_path
from bench.plughost_sys import REPO
from bench.ray_sys import ray_available
from bench.report import (
    evaluate_goals,
    machine_info,
    render_markdown,
    render_png,
    update_readme,
)
from bench.settings import PROFILES, Profile
from bench.systems import (
    Systems,
    minilm_available,
    new_work_dir,
    setup_floors,
    setup_plughost,
    setup_plughost_ray,
    setup_ray,
)

log = logging.getLogger("bench")
DEFAULT_OUT = REPO / "bench" / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where servers keep their homes and logs (default: a temp dir)",
    )
    parser.add_argument("--no-ray", action="store_true", help="skip systems 3 and 4")
    parser.add_argument("--no-wrk", action="store_true", help="use the asyncio load generator")
    parser.add_argument("--keep-work", action="store_true", help="keep the work dir")
    parser.add_argument(
        "--no-readme",
        action="store_true",
        help="do not rewrite the goals table in docs/benchmarks.md after a full run",
    )
    return parser.parse_args(argv)


def start_systems(systems: Systems, profile: Profile, args: argparse.Namespace) -> list[str]:
    """Start all systems side by side; returns the plugins of the data-plane matrix."""
    plugins = list(profile.points)
    why_not = minilm_available()
    if "minilm" in plugins and why_not:
        plugins.remove("minilm")
        systems.skipped["minilm"] = why_not
    ray_why = "disabled with --no-ray" if args.no_ray else ray_available()
    with ThreadPoolExecutor(max_workers=5) as pool:
        jobs = [
            pool.submit(setup_floors, systems, plugins),
            pool.submit(setup_plughost, systems, plugins, profile.alias_plugins),
        ]
        if ray_why:
            for variant in profile.ray_variants:
                systems.skipped["ray-serve" if variant == "default" else "ray-serve-tuned"] = (
                    ray_why
                )
        else:
            jobs += [pool.submit(setup_ray, systems, v, plugins) for v in profile.ray_variants]
        if profile.plughost_ray and args.no_ray:
            systems.skipped["plughost-ray"] = "disabled with --no-ray"
        elif profile.plughost_ray:
            jobs.append(pool.submit(setup_plughost_ray, systems, plugins))
        for job in jobs:
            job.result()  # the plughost local server is required: its failure ends the run
    return plugins


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    profile = PROFILES[args.profile]
    prefer_wrk = not args.no_wrk and wrk_path() is not None
    started = datetime.now(UTC)
    t_start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    work = new_work_dir(args.work_dir)
    systems = Systems(work=work)
    res: dict[str, Any] = {
        "meta": {
            "profile": profile.name,
            "started": started.strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_info(),
            "loadgen": (
                "wrk -t1 (closed loop) and bench.loadgen (open loop, background load)"
                if prefer_wrk
                else "bench.loadgen, asyncio (wrk not installed)"
            ),
            "duration_s": profile.duration_s,
            "rounds": profile.rounds,
            "notes": list(profile.notes),
        }
    }
    log.info(
        "work dir %s; profile %s; load generator %s",
        work,
        profile.name,
        "wrk" if prefer_wrk else "python",
    )
    completed = False
    try:
        plugins = start_systems(systems, profile, args)
        res["setup"] = systems.setup_seconds
        log.info("systems up: %s", sorted({(e.system, e.plugin) for e in systems.endpoints}))
        for name, why in systems.skipped.items():
            log.warning("skipped %s: %s", name, why)

        res["memory"] = dataplane.replica_memory(systems, plugins)
        dataplane.warm(systems.endpoints, profile.warmup_s, prefer_wrk)
        res["idle_cpu"] = dataplane.idle_cpu(systems, max(1.0, profile.duration_s))
        res["runs"] = dataplane.run_matrix(systems, profile, prefer_wrk)
        res["summary"] = dataplane.summarize(res["runs"])
        res["profile"] = dataplane.profile_plughost(
            systems, profile.profile_s, prefer_wrk, args.out
        )

        res["deploy"] = controlplane.deploy_times(systems, profile)
        server = systems.plughost
        assert server is not None
        first = res["deploy"]["plugin_ids"][0]
        res["redeploy"] = controlplane.redeploy_times(server, first, profile.redeploy_n)
        log.info("redeploys: %s", [round(x, 3) for x in res["redeploy"]])
        res["bluegreen"] = controlplane.redeploys_under_load(
            server, profile.bluegreen_n, profile.bluegreen_c
        )
        log.info(
            "redeploys under load: %s failed of %s",
            res["bluegreen"]["failed"],
            res["bluegreen"]["requests"],
        )
        controlplane.undeploy_many(server, res["deploy"]["plugin_ids"])
        ph_ray = systems.plughost_ray
        if ph_ray is not None and res["deploy"].get("plughost_ray"):
            # issue 15: blue-green on the Ray backend, under the same load as on local
            ray_id = controlplane.upload_many(ph_ray, ["bench_rredeploy"], 1)[0]
            ph_ray.deploy_and_wait(ray_id)
            res["redeploy_ray"] = controlplane.redeploy_times(ph_ray, ray_id, profile.redeploy_n)
            ph_ray.undeploy(ray_id)
            res["bluegreen_ray"] = controlplane.redeploys_under_load(
                ph_ray, profile.bluegreen_n, profile.bluegreen_c
            )
            log.info("redeploys under load on Ray: %s failed", res["bluegreen_ray"]["failed"])

        systems.stop_baselines()  # the rest only needs plughost: give it the machine
        res["status"] = controlplane.status_under_deployments(
            server, profile, prefer_wrk, systems.plugin_ids.get("hash16")
        )
        log.info(
            "status under deployments: %.0f req/s p99 %.1f ms",
            res["status"]["rps"],
            res["status"]["p99_us"] / 1000,
        )
        res["queue"] = controlplane.queue_many(server, profile)
        log.info(
            "%d queued: %d deployed in %.1f s",
            res["queue"]["queued"],
            res["queue"]["deployed"],
            res["queue"]["total_s"],
        )
        res["env_deploy"] = controlplane.env_deploy_times(server, profile)
        # issue 14: its own servers and homes
        res["restart"] = restart.run(work / "restart", seconds=max(1.0, profile.duration_s))
        # issue 17: cold start from zero (and where it goes), scale 1 -> 4, rollbacks
        full = profile.name == "full"
        res.update(
            elastic.run(
                work / "elastic",
                rounds=10 if full else 1,
                minilm_rounds=5 * full,
                ray_rounds=0 if args.no_ray else 10 if full else 1,
            )
        )
        # issue 27: the first deploy in a fresh Ray cluster, plughost-ray against serve.run
        res.update(
            {"ray_first": {"skipped": "disabled with --no-ray"}}
            if args.no_ray
            else ray_first.run(work / "ray_first", rounds=3 if full else 1)
        )
        res.update(rollouts.run(work / "rollouts"))
        # realtime latency while a 400-module archive uploads by each route (its own server)
        res.update(
            upload_stall.run(
                work / "upload_stall",
                quiet_s=max(2.0, profile.duration_s),
                modules=400 if profile.name == "full" else 100,
            )
        )
        # issue 16: 1 against 2 workers on PostgreSQL (their own servers and databases)
        res.update(
            workers.run(
                work / "workers", seconds=max(2.0, profile.duration_s), rounds=3 if full else 1
            )
        )
        # issue 16: leader failover and status propagation between two servers
        res.update(multiserver.run(rounds=5 if full else 1, changes=20 if full else 2))
        # namespace models: cold and warm first answers, shared weights (its own server)
        res.update(
            models.run(work / "models", rounds=5 if full else 1, size_mb=100 if full else 20)
        )
        # issue 27: start-up to /healthz and memory at rest, beside the floor (own servers)
        res.update(startup.run(work / "startup", rounds=5 if full else 1))
        # issue 28: replica start and p50 latency, cgroup layer on against off (own servers)
        res.update(
            cgroups.run(work / "cgroups", rounds=5 if full else 1, calls=300 if full else 50)
        )
        # issue 26: micro-batching, batched against unbatched at c=16 (its own server)
        res.update(
            batching.run(
                work / "batching",
                seconds=profile.batching_s,
                rounds=profile.batching_rounds,
                prefer_wrk=prefer_wrk,
                warmup_s=profile.batching_warmup_s,
            )
        )
        completed = True
    finally:
        systems.stop_all()
        res["skipped"] = systems.skipped
        res["meta"]["wall_s"] = time.perf_counter() - t_start
        others = [r["other_cpu_cores"] for r in res.get("runs", []) if "other_cpu_cores" in r]
        res["meta"]["other_cpu_cores_median"] = statistics.median(others) if others else 0.0
        res["meta"]["other_cpu_cores_max"] = max(others) if others else 0.0
        res["meta"]["noisy"] = bool(others) and statistics.median(others) > 0.25
        readme = (
            completed
            and profile.name == "full"
            and not args.no_readme
            and args.out.resolve() == DEFAULT_OUT.resolve()
        )
        write_outputs(res, args.out, REPO / "docs" / "benchmarks.md" if readme else None)
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def write_outputs(res: dict[str, Any], out: Path, readme: Path | None = None) -> None:
    goals = evaluate_goals(res)
    res["goals"] = goals
    (out / "latest.json").write_text(json.dumps(res, indent=1, default=str))
    (out / "latest.md").write_text(render_markdown(res, goals))
    try:
        render_png(res, out / "latest.png")
    except ImportError as exc:
        log.warning("no plot: %s (pip install -e '.[bench]')", exc)
    log.info(
        "wrote %s", ", ".join(str(out / f) for f in ("latest.md", "latest.png", "latest.json"))
    )
    if readme is not None and update_readme(readme, res, goals):
        log.info("updated the goals table in %s", readme)
    for g in goals:
        log.info(
            "%-7s %s: %s",
            {True: "MET", False: "MISSED", None: "n/a"}[g["met"]],
            g["figure"],
            g["measured"],
        )


if __name__ == "__main__":
    sys.exit(main())
