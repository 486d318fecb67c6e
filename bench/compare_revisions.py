"""plughost against an earlier commit, the same figures side by side in one run:
``python -m bench.compare_revisions --rev 0229ee4 [--quick] [--head REV] [--out DIR]``.

The baseline ``--rev`` is exported with ``git archive`` and run by a throwaway interpreter
that imports that revision's plughost in its server and in every replica (bench/revisions.py);
the other side is this checkout as installed (``--head worktree``, the default) or another
revision exported the same way. Both servers run at once, each with its own home and port.

Every round measures the baseline, then the head, each in turn:
- inference at concurrency 32 on the hash16 plugin: requests/s, p50, p99, CPU per request
  (server and replicas);
- the plugin status endpoint polled at concurrency 32: requests/s, p99;
- the server's RSS after that load, and its largest replica's;
- upload of a fresh hash16, then deploy until `deployed` (then undeployed again).
The tables give medians over rounds (deploys: over every deploy), the head/baseline ratio and
whether the two sides' ranges overlap. Writes ``compare-<rev>.md`` and ``.json`` into
``--out`` (default bench/results). A benchmark is not a test: nothing here gates on a figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import procstat
from bench.compare_report import CONCURRENCY, render, summarize
from bench.dataplane import measure
from bench.load import LoadSpec, run_load, wrk_path
from bench.plughost_sys import REPO, BenchError, zip_plugin
from bench.report import machine_info
from bench.revisions import WORKTREE, Reaper, RevisionServer, Side, prepare_side
from bench.systems import PLUGINS, Endpoint

log = logging.getLogger("bench")
DEFAULT_OUT = REPO / "bench" / "results"
ARCHIVE = zip_plugin(PLUGINS["hash16"])
IDLE_CORES = 0.1  # both servers' trees together, below which a side may be measured


@dataclass(frozen=True)
class Plan:
    name: str
    rounds: int
    load_s: float  # each inference run
    status_s: float  # each status run
    deploys: int  # fresh upload + deploy per side and round
    warm_s: float  # load on each side before the first round


FULL = Plan("full", rounds=5, load_s=5.0, status_s=3.0, deploys=2, warm_s=2.0)
QUICK = Plan("quick", rounds=3, load_s=2.0, status_s=1.0, deploys=1, warm_s=0.5)


# -- setup ------------------------------------------------------------------------------------
def start_side(side: Side, work: Path, reaper: Reaper, plan: Plan, prefer_wrk: bool) -> None:
    """Start the side's server, deploy the load plugin, warm it, prove which code it runs."""
    side.server = RevisionServer(work / f"home-{side.name}", python=side.python)
    side.server.start()
    reaper.note([side.server.pid])
    side.plugin_id = side.server.upload("cmp_hash16", ARCHIVE)
    side.server.deploy_and_wait(side.plugin_id)
    reaper.note([side.server.pid])
    spec = LoadSpec(
        [side.server.route_url(side.plugin_id)],
        headers=[side.server.auth_header],
        concurrency=CONCURRENCY,
        duration=plan.warm_s,
    )
    run_load(spec, prefer_wrk=prefer_wrk)
    replicas = side.replica_pids()
    if not replicas:
        raise BenchError(
            f"{side.label}: no replica runs `{side.python} -I -m {side.replica_module}`"
        )
    side.replica_argv = _short_argv(procstat.cmdline(replicas[0]))
    log.info("%s: server %s, replica: %s", side.label, side.server.url, side.replica_argv)


def _short_argv(argv: str) -> str:
    """A replica's command line up to its module (the rest is sockets and secrets' paths)."""
    match = re.match(r"(\S+ -I -m \S+)", argv)
    return match.group(1) if match else argv[:200]


# -- one round on one side --------------------------------------------------------------------
def measure_side(side: Side, plan: Plan, rnd: int, prefer_wrk: bool) -> dict[str, Any]:
    """Every figure of one round on one side (deploy figures: one value per deploy)."""
    server = side.server
    assert server is not None
    auth = [server.auth_header]
    url = server.route_url(side.plugin_id)
    infer = measure(
        Endpoint(side.name, "hash16", url, auth, [server.pid]),
        LoadSpec([url], headers=auth, concurrency=CONCURRENCY, duration=plan.load_s),
        prefer_wrk,
    )
    status = run_load(
        LoadSpec(
            [server.status_url(side.plugin_id)],
            method="GET",
            body="",
            headers=auth,
            concurrency=CONCURRENCY,
            duration=plan.status_s,
        ),
        prefer_wrk=prefer_wrk,
    )
    replica_kb = max((procstat.rss_kb(p) for p in side.replica_pids()), default=0)
    row: dict[str, Any] = {
        "side": side.name,
        "round": rnd,
        "infer_rps": infer["rps"],
        "infer_p50_ms": infer["p50_us"] / 1000,
        "infer_p99_ms": infer["p99_us"] / 1000,
        "infer_cpu_us": infer["cpu_us_per_req"],
        "status_rps": status["rps"],
        "status_p99_ms": status["p99_us"] / 1000,
        "server_rss_mib": procstat.rss_kb(server.pid) / 1024,
        "replica_rss_mib": replica_kb / 1024 or None,
        "failed": infer["failed"] + status["failed"],
        "upload_s": [],
        "deploy_s": [],
        "upload_deploy_s": [],
    }
    for i in range(plan.deploys):
        t0 = time.perf_counter()
        plugin_id = server.upload(f"cmp_deploy_{rnd}_{i}", ARCHIVE)
        upload = time.perf_counter() - t0
        deploy = server.deploy_and_wait(plugin_id)
        server.undeploy(plugin_id)
        row["upload_s"].append(upload)
        row["deploy_s"].append(deploy)
        row["upload_deploy_s"].append(upload + deploy)
    return row


def settle(sides: list[Side], limit: float = 20.0, window: float = 0.3) -> float:
    """Wait until both servers and their replicas are idle; the seconds waited.

    A deploy leaves work behind it (the undeployed replica draining, a new warm spare
    importing the replica code), and the side measured next must not pay for it.
    """
    roots = [side.server.pid for side in sides if side.server is not None]
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        cpu0 = procstat.tree_cpu_seconds(roots)
        time.sleep(window)
        if (procstat.tree_cpu_seconds(roots) - cpu0) / window < IDLE_CORES:
            break
    return time.perf_counter() - t0


def run_rounds(
    sides: list[Side], plan: Plan, reaper: Reaper, prefer_wrk: bool
) -> list[dict[str, Any]]:
    """Interleaved rounds: baseline, head, baseline, head..."""
    rows: list[dict[str, Any]] = []
    for rnd in range(plan.rounds):
        for side in sides:
            waited = settle(sides)
            row = measure_side(side, plan, rnd, prefer_wrk)
            row["settle_s"] = waited
            assert side.server is not None
            reaper.note([side.server.pid])
            rows.append(row)
            log.info(
                "r%d %-8s %7.0f req/s  p50 %6.2f ms  p99 %6.2f ms  status %6.0f req/s  "
                "deploy %.3f s  rss %.0f MiB  failed %d  (settled in %.1f s)",
                rnd,
                side.name,
                row["infer_rps"],
                row["infer_p50_ms"],
                row["infer_p99_ms"],
                row["status_rps"],
                statistics.median(row["deploy_s"]) if row["deploy_s"] else float("nan"),
                row["server_rss_mib"],
                row["failed"],
                waited,
            )
    return rows


# -- main -------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", required=True, help="the baseline commit (e.g. 0229ee4)")
    parser.add_argument(
        "--head", default=WORKTREE, help="the other side: a commit, or 'worktree' (default)"
    )
    parser.add_argument("--quick", action="store_true", help="a ~1 minute smoke, not a measurement")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--work-dir", type=Path, default=None, help="parent of the temp folder")
    parser.add_argument("--keep-work", action="store_true", help="keep trees, homes and logs")
    parser.add_argument("--no-wrk", action="store_true", help="use the asyncio load generator")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stop_sides(sides: list[Side], reaper: Reaper) -> None:
    """Stop every server, then end whatever it left behind (replicas kept for adoption)."""
    started = [side.server for side in sides if side.server and side.server.proc]
    for server in started:
        reaper.note([server.pid])
        server.stop()
    left = reaper.reap()
    log.info("stopped %d server(s), then ended %d process(es) they left", len(started), left)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="plughost-compare-", dir=args.work_dir))
    reaper = Reaper()
    sides: list[Side] = []
    try:
        compare(args, work, reaper, sides)
    except BenchError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted; cleaning up")
        return 130
    finally:
        # a second Ctrl-C (or a SIGTERM) must not cut the cleanup short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_sides(sides, reaper)
        if args.keep_work:
            log.info("work folder kept: %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return 0


def compare(args: argparse.Namespace, work: Path, reaper: Reaper, sides: list[Side]) -> None:
    """Prepare and start both sides (appended to ``sides`` as they come, for the cleanup),
    run the rounds, write the outputs."""
    plan = QUICK if args.quick else FULL
    prefer_wrk = not args.no_wrk and wrk_path() is not None
    t0 = time.perf_counter()
    meta: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "plan": plan.name,
        "rounds": plan.rounds,
        "load_s": plan.load_s,
        "status_s": plan.status_s,
        "deploys": plan.deploys,
        "loadgen": "wrk -t1" if prefer_wrk else "bench.loadgen (asyncio)",
        "machine": machine_info(),
        "loadavg_start": list(os.getloadavg()),
    }
    sides.append(prepare_side("baseline", args.rev, work))
    sides.append(prepare_side("head", args.head, work))
    for side in sides:
        start_side(side, work, reaper, plan, prefer_wrk)
    rows = run_rounds(sides, plan, reaper, prefer_wrk)
    meta.update(loadavg_end=list(os.getloadavg()), total_s=time.perf_counter() - t0)
    write_outputs(args.out, args.rev, meta, sides, rows)


def write_outputs(
    out: Path, rev: str, meta: dict[str, Any], sides: list[Side], rows: list[dict[str, Any]]
) -> None:
    summary = summarize(rows)
    name = "compare-" + re.sub(r"[^A-Za-z0-9._-]", "_", rev)
    out.mkdir(parents=True, exist_ok=True)
    md = render(meta, sides, summary)
    (out / f"{name}.md").write_text(md)
    doc = {
        "meta": meta,
        "sides": [
            {
                "name": s.name,
                "rev": s.rev,
                "label": s.label,
                "commit": s.commit,
                "python": s.python,
                "src": str(s.src),
                "replica_argv": s.replica_argv,
            }
            for s in sides
        ],
        "summary": summary,
        "rows": rows,
    }
    (out / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(md)
    log.info("wrote %s and %s", out / f"{name}.md", out / f"{name}.json")


if __name__ == "__main__":
    sys.exit(main())
