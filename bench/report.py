"""Goals, the markdown report and the plot, all from the results dict of one run."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench import batching as batching_goals
from bench import cgroups as cgroups_cost
from bench import models as models_goals
from bench import multiserver as multiserver_goals
from bench import ray_goals
from bench import restart as restart_goals
from bench import startup as startup_goals
from bench import upload_stall as upload_stall_goals
from bench import workers as workers_goals
from bench.systems import SYSTEM_ORDER

Goal = dict[str, Any]


# -- machine ------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo") as fh:
            mem_kb = int(next(ln.split()[1] for ln in fh if ln.startswith("MemTotal")))
    except (OSError, StopIteration):
        pass
    versions: dict[str, str] = {}
    for mod in ("plughost", "ray", "torch", "uvicorn", "fastapi", "orjson"):
        try:
            versions[mod] = version(mod)
        except PackageNotFoundError:
            versions[mod] = "-"
    wrk = ""
    try:
        out = subprocess.run(
            ["wrk", "--version"], capture_output=True, text=True, timeout=5, check=False
        )
        wrk = (out.stdout + out.stderr).split("\n")[0].strip()
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "wrk": wrk,
        "loadavg_at_start": os.getloadavg(),
    }


# -- helpers ------------------------------------------------------------------------------------
def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _cell(summary: dict[str, Any], plugin: str, point: str, system: str) -> dict[str, Any] | None:
    return summary.get(plugin, {}).get(point, {}).get(system)


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.2f}"


def _num(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def _verdict(met: bool | None) -> str:
    return {True: "MET", False: "MISSED", None: "n/a"}[met]


# -- goals --------------------------------------------------------------------------------------
# Each goal is a row of data: what is measured, the target, and a small function that reads the
# run's results and returns the measured text and the verdict (None: not measured).
Judge = Callable[[dict[str, Any]], tuple[str, bool | None]]


@dataclass(frozen=True)
class GoalRow:
    key: str  # names the goal in likely_cause() and the README table
    goal: str
    figure: Callable[[dict[str, Any]], str]
    judge: Judge

    def evaluate(self, res: dict[str, Any]) -> Goal:
        measured, met = self.judge(res)
        return {
            "figure": self.figure(res),
            "goal": self.goal,
            "measured": measured,
            "met": met,
            "key": self.key,
        }


# deploy -> `deployed` (and a blue-green redeploy) of hash16, locally, median, measured by a
# client polling the status every 2 ms (bench.controlplane.POLL_S)
DEPLOY_GOAL_S = 0.05


def _deploy(res: dict[str, Any]) -> tuple[str, bool | None]:
    deploy = res.get("deploy", {})
    ph = _median(deploy.get("plughost", []))
    ray = _median(deploy.get("ray_serve_run", []))
    ratio = (ray / ph) if ph and ray else None
    measured = (
        f"{_num(ph, '{:.3f}')} s; Ray serve.run {_num(ray, '{:.3f}')} s; "
        f"{_num(ratio, '{:.1f}')}x" + ("" if ray else " (Ray baseline missing)")
    )
    return measured, None if ph is None else ph <= DEPLOY_GOAL_S


def _redeploy(res: dict[str, Any]) -> tuple[str, bool | None]:
    red = _median(res.get("redeploy", []))
    measured = f"{_num(red, '{:.3f}')} s (median of {len(res.get('redeploy', []))})"
    return measured, None if red is None else red <= DEPLOY_GOAL_S


def _hash16(res: dict[str, Any], point: str, system: str) -> dict[str, Any] | None:
    return _cell(res.get("summary", {}), "hash16", point, system)


def _p50(res: dict[str, Any]) -> tuple[str, bool | None]:
    floor1, ph1 = _hash16(res, "c=1", "floor"), _hash16(res, "c=1", "plughost")
    al1 = _hash16(res, "c=1", "plughost-alias")
    if not (floor1 and ph1):
        return "not measured", None
    delta = ph1["p50_us"] - floor1["p50_us"]
    extra = f"; alias +{(al1['p50_us'] - floor1['p50_us']) / 1000:.2f} ms" if al1 else ""
    measured = (
        f"{_ms(ph1['p50_us'])} ms vs floor {_ms(floor1['p50_us'])} ms "
        f"(+{delta / 1000:.2f} ms){extra}"
    )
    return measured, delta <= 100


def _rps_hash(res: dict[str, Any]) -> tuple[str, bool | None]:
    f32, p32 = _hash16(res, "c=32", "floor"), _hash16(res, "c=32", "plughost")
    r32 = _hash16(res, "c=32", "ray-serve")
    if not (f32 and p32):
        return "not measured in this profile", None
    vs_floor = p32["rps"] / f32["rps"] if f32["rps"] else 0.0
    vs_ray = p32["rps"] / r32["rps"] if r32 and r32["rps"] else None
    measured = (
        f"{p32['rps']:,.0f} req/s = {vs_floor:.0%} of floor "
        f"({f32['rps']:,.0f}); {_num(vs_ray, '{:.1f}')}x Ray Serve "
        f"({_num(r32['rps'] if r32 else None)})"
    )
    return measured, vs_floor >= 0.8 and (vs_ray is None or vs_ray >= 3)


def _cpu_req(res: dict[str, Any]) -> tuple[str, bool | None]:
    """Issue 27: plughost's CPU per request (server + replicas) against the floor's, hash16
    at concurrency 1 and 32."""
    parts, met = [], True
    for point in ("c=1", "c=32"):
        floor, ph = _hash16(res, point, "floor"), _hash16(res, point, "plughost")
        f_cpu = (floor or {}).get("cpu_us_per_req")
        p_cpu = (ph or {}).get("cpu_us_per_req")
        if not (f_cpu and p_cpu):
            return f"not measured at {point} in this profile", None
        parts.append(f"{point}: {p_cpu:.0f} vs {f_cpu:.0f} us ({p_cpu / f_cpu:.2f}x)")
        met = met and p_cpu <= 2 * f_cpu
    return "; ".join(parts), met


def _rps_minilm(res: dict[str, Any]) -> tuple[str, bool | None]:
    summary = res.get("summary", {})
    fm, pm = _cell(summary, "minilm", "c=32", "floor"), _cell(summary, "minilm", "c=32", "plughost")
    if not (fm and pm):
        return "not measured in this profile", None
    share = pm["rps"] / fm["rps"] if fm["rps"] else 0.0
    return f"{pm['rps']:,.1f} req/s = {share:.0%} of floor ({fm['rps']:,.1f})", share >= 0.9


def _bluegreen(res: dict[str, Any]) -> tuple[str, bool | None]:
    bg = res.get("bluegreen", {})
    measured = f"{bg.get('failed', '-')} failed of {bg.get('requests', '-')}" + (
        f" ({bg.get('errors')})" if bg.get("failed") else ""
    )
    return measured, None if "failed" not in bg else bg["failed"] == 0


def _rss(res: dict[str, Any]) -> tuple[str, bool | None]:
    mem = res.get("memory", {}).get("hash16", {})
    bare = mem.get("bare", {}).get("rss_kb")
    rep = mem.get("plughost", {}).get("rss_kb")
    measured = (
        f"{_num(rep / 1024 if rep else None, '{:.1f}')} MiB vs bare "
        f"{_num(bare / 1024 if bare else None, '{:.1f}')} MiB"
        + (f" = {rep / bare:.2f}x" if rep and bare else "")
    )
    return measured, None if not (rep and bare) else rep <= 1.5 * bare


def _status(res: dict[str, Any]) -> tuple[str, bool | None]:
    st = res.get("status", {})
    if not st:
        return "not measured", None
    measured = f"{_num(st.get('rps'))} req/s, p99 {_ms(st.get('p99_us'))} ms"
    return measured, st["rps"] >= 2000 and st["p99_us"] <= 20_000


def _queue(res: dict[str, Any]) -> tuple[str, bool | None]:
    q = res.get("queue", {})
    if not q:
        return "not measured", None
    measured = (
        f"{q.get('deployed', '-')}/{q.get('queued', '-')} deployed in "
        f"{_num(q.get('total_s'), '{:.1f}')} s; lost {q.get('lost', '-')}, "
        f"failed {q.get('failed', '-')}"
    )
    return measured, q["deployed"] == q["queued"] and q["lost"] == 0 and q["failed"] == 0


def _env_deploy(res: dict[str, Any]) -> tuple[str, bool | None]:
    """Cold (environment built) and warm (reused) beside the plain deploy; reuse should cost
    next to nothing."""
    env = res.get("env_deploy", {})
    cold, warm, plain = (_median(env.get(k, [])) for k in ("cold", "warm", "plain"))
    measured = (
        f"cold {_num(cold, '{:.3f}')} s, warm {_num(warm, '{:.3f}')} s, "
        f"plain {_num(plain, '{:.3f}')} s"
        if env
        else "not measured"
    )
    return measured, None if warm is None or plain is None else warm <= plain + 0.5


def _cpu(res: dict[str, Any]) -> tuple[str, bool | None]:
    points = [point for plugin in res.get("summary", {}).values() for point in plugin.values()]
    seen = {s for point in points for s in point}
    with_cpu = {
        s for point in points for s, v in point.items() if v.get("cpu_us_per_req") is not None
    }
    return f"{len(with_cpu)}/{len(seen)} systems", bool(seen) and with_cpu == seen


def _rollback(res: dict[str, Any]) -> tuple[str, bool | None]:
    """Issue 17, from ``python -m bench.rollouts`` (its JSON merged into the results)."""
    runs = res.get("rollback") or []
    if not runs:
        return "not measured (python -m bench.rollouts)", None
    parts = [
        f"{r['strategy']}: {r['failed']} failed of {r['calls']} (bound {r['bound']}), "
        f"{r['status']} in {r['seconds_to_rollback']} s"
        for r in runs
    ]
    met = all(r["status"] == "failed" and r["failed"] <= r["bound"] for r in runs)
    return "; ".join(parts), met


def _cold_start(res: dict[str, Any]) -> tuple[str, bool | None]:
    """Issue 17, from ``python -m bench.elastic`` (its JSON merged into the results)."""
    cold = res.get("cold") or {}
    med = cold.get("cold_start_median_s")
    if med is None:
        return "not measured (python -m bench.elastic)", None
    fresh = cold.get("fresh_deploy_median_s")
    rounds = len(cold.get("cold_start_s") or [])
    plain = cold.get("cold_start_no_spare_median_s")
    text = (
        f"{med:.3f} s (median of {rounds}, warm spare); without the spare "
        f"{_num(plain, '{:.3f}')} s; a fresh deploy {_num(fresh, '{:.3f}')} s"
    )
    text += _ray_zero(med, cold.get("ray_zero") or {})
    parts = cold.get("breakdown") or {}
    if parts:
        ms = lambda key: _num(parts.get(key, 0) * 1000, "{:.0f}")
        text += (
            f"; a replica start {ms('replica_start_s')} ms: interpreter "
            f"{ms('interpreter_s')}, sandbox {ms('sandbox_wrap_s')} + {ms('sandbox_enter_s')}, "
            f"runtime imports {ms('runtime_imports_s')}, plugin load {ms('plugin_load_s')}"
        )
    return text, med <= 0.15


def _ray_zero(med: float, ray: dict[str, Any]) -> str:
    """Ray Serve's scale-from-zero of the same plugin (``bench.ray_zero``), and the ratio."""
    if ray.get("skipped"):
        return f"; Ray Serve scale-from-zero not measured ({ray['skipped']})"
    ray_med = ray.get("cold_start_median_s")
    if not ray_med:
        return ""
    rounds = len(ray.get("cold_start_s") or [])
    return (
        f"; Ray Serve scale-from-zero {ray_med:.2f} s (N={rounds}), "
        f"plughost/Ray {med / ray_med:.3f}"
    )


def _cold_minilm(res: dict[str, Any]) -> tuple[str, bool | None]:
    """Issue 17, from ``bench.elastic`` (full profile): MiniLM from zero against its load."""
    cold = res.get("cold_minilm") or {}
    med, load = cold.get("cold_start_median_s"), cold.get("model_load_s")
    if med is None or load is None:
        return f"not measured ({cold.get('skipped') or 'python -m bench.elastic'})", None
    rounds = len(cold.get("cold_start_s") or [])
    text = f"{med:.2f} s (median of {rounds}, warm spare); model load {load:.2f} s"
    whole = cold.get("load_with_imports_s")
    tail = f"; load with its imports {whole:.2f} s" if whole is not None else ""
    return f"{text} (+{med - load:.2f} s){tail}", med <= load + 0.3


def _scale_up(res: dict[str, Any]) -> tuple[str, bool | None]:
    scale = res.get("scale") or {}
    if "scale_1_to_4_s" not in scale:
        return "not measured (python -m bench.elastic)", None
    took = scale["scale_1_to_4_s"]
    return f"{_num(took, '{:.2f}')} s, {scale.get('failed')} failed calls", took is not None


def _has_hash16_c1(res: dict[str, Any]) -> bool:
    return bool(_hash16(res, "c=1", "floor") and _hash16(res, "c=1", "plughost"))


GOALS: tuple[GoalRow, ...] = (
    GoalRow(
        "deploy",
        "<= 0.05 s (Ray serve.run beside it)",
        lambda r: "deploy -> deployed, hash embedder, local, status polled every 2 ms "
        f"(median of {len(r.get('deploy', {}).get('plughost', []))})",
        _deploy,
    ),
    GoalRow(
        "redeploy", "<= 0.05 s",
        lambda r: "redeploy of a deployed plugin (blue-green), status polled every 2 ms",
        _redeploy,
    ),
    GoalRow(
        "p50",
        "<= floor + 0.1 ms",
        lambda r: "p50 latency at concurrency 1, plughost vs floor"
        + (" (hash16)" if _has_hash16_c1(r) else ""),
        _p50,
    ),
    GoalRow(
        "rps_hash",
        ">= 80% of floor, >= 3x Ray Serve defaults",
        lambda r: "requests/s at concurrency 32, hash embedder",
        _rps_hash,
    ),
    GoalRow(
        "cpu_req",
        "<= 2x floor at c=1 and c=32",
        lambda r: "CPU per request (whole process tree), hash embedder",
        _cpu_req,
    ),
    GoalRow(
        "rps_minilm", ">= 90% of floor", lambda r: "requests/s at concurrency 32, MiniLM", _rps_minilm
    ),
    GoalRow(
        "bluegreen",
        "0",
        lambda r: f"failed requests during {r.get('bluegreen', {}).get('redeploys', '?')} "
        f"blue-green redeploys under concurrency {r.get('bluegreen', {}).get('concurrency', '?')}",
        _bluegreen,
    ),
    GoalRow(
        "rss",
        "<= 1.5x a bare Python importing the plugin",
        lambda r: "RSS of one idle replica, hash embedder",
        _rss,
    ),
    GoalRow(
        "status",
        ">= 2,000 req/s, p99 <= 20 ms",
        lambda r: f"status endpoint at concurrency {r.get('status', {}).get('concurrency', '?')} "
        f"while {r.get('status', {}).get('deployments', '?')} deployments run",
        _status,
    ),
    GoalRow(
        "queue",
        "all deployed, none lost, total time reported",
        lambda r: f"{r.get('queue', {}).get('queued', '?')} deployments queued at once "
        "(hash embedder)",
        _queue,
    ),
    GoalRow(
        "env_deploy",
        "reported; warm (environment reused) <= plain + 0.5 s",
        lambda r: "deploy with one extra dependency "
        f"({r.get('env_deploy', {}).get('dependency', '?')}), "
        f"median of {len(r.get('env_deploy', {}).get('cold', []))}",
        _env_deploy,
    ),
    GoalRow(
        "cpu",
        "reported for each system",
        lambda r: "CPU microseconds per request (server + replicas, /proc)",
        _cpu,
    ),
    # issue 14: serving across the server's own restarts (bench/restart.py)
    GoalRow(
        "restart_kill",
        "only the requests in flight on the killed process fail",
        lambda r: "server SIGKILL + start under load, 8 connections, one per request",
        restart_goals.judge_kill_start,
    ),
    GoalRow(
        "restart_takeover",
        "0 failed",
        lambda r: "two takeovers by a second server under load, 16 connections, one per request",
        restart_goals.judge_takeover,
    ),
    GoalRow(
        "rollback",
        "rolled back; failed calls <= step share x 30% x calls + 5",
        lambda r: "failed calls during an automatic rollback (v2 fails 30%, canary 10% and bake)",
        _rollback,
    ),
    GoalRow(
        "upload_stall",
        "no call fails; max <= 10 x quiet p99 + 100 ms",
        lambda r: "realtime calls while a 400-module archive uploads: multipart, presign+confirm",
        upload_stall_goals.judge,
    ),
    GoalRow(
        "cold_start",
        "<= 150 ms",
        lambda r: "cold start from zero, call to answer, hash embedder (median)",
        _cold_start,
    ),
    GoalRow(
        "cold_start_minilm",
        "<= its model load + 0.3 s",
        lambda r: "cold start from zero, call to answer, MiniLM (median)",
        _cold_minilm,
    ),
    GoalRow(
        "scale_up",
        "reported",
        lambda r: "seconds to scale 1 -> 4 replicas under a step in load (local)",
        _scale_up,
    ),
    # issue 16: `plughost serve --workers N` (bench/workers.py)
    GoalRow(
        "workers",
        "reported",
        lambda r: "1 -> 2 workers, hash embedder, req/s and p50/p99 at c=32 and c=64",
        workers_goals.judge,
    ),
    GoalRow(
        "multiserver",
        "leader failover <= 5 s; propagation reported",
        lambda r: "two servers on one PostgreSQL: leader SIGKILL -> survivor leads; status change seen by the other",
        multiserver_goals.judge,
    ),
    # namespace models: weights loaded from the page cache, shared by replicas (bench/models.py)
    GoalRow(
        "models",
        "reported",
        lambda r: f"{r.get('models', {}).get('size_mb', 100)} MB safetensors namespace model: "
        "first answer cold / warm (preloaded); PSS of 4 replicas mapping it vs 4 holding "
        "private copies",
        models_goals.judge,
    ),
    # issue 26: micro-batching, batched against unbatched in one run (bench/batching.py)
    GoalRow(
        "batching",
        "reported (ratio batched / unbatched)",
        lambda r: "calls/s at concurrency 16, max_batch_size 16 vs unbatched: a plugin "
        "sleeping 20 ms per batch, and MiniLM (one encode per batch)",
        batching_goals.judge,
    ),
    # issue 27 goal 5: start-up and memory at rest (bench/startup.py)
    GoalRow(
        "idle_rss",
        "<= 100 MiB",
        lambda r: "RSS of an idle server (plughost serve at rest, local backend, median)",
        startup_goals.judge_rss,
    ),
    GoalRow(
        "workers_rss",
        "<= 100 MiB each",
        lambda r: "RSS of each --workers process at rest (PLUGHOST_WORKERS=2, PostgreSQL)",
        startup_goals.judge_workers,
    ),
    GoalRow(
        "healthz_start",
        "<= 1 s",
        lambda r: "plughost serve -> /healthz 200 on a fresh home (polled every 5 ms)",
        startup_goals.judge_healthz,
    ),
    # issue 28: the cost of the cgroup layer, on against off (bench/cgroups.py)
    GoalRow(
        "cgroup_cost",
        "reported (ratio cgroup / rlimit)",
        lambda r: "hash16 replica start (deploy -> deployed) and p50 at c=1, each replica in "
        "its cgroup vs the address-space rlimit only",
        cgroups_cost.judge,
    ),
    # issue 15: plughost on Ray against Ray Serve tuned, same run (bench/ray_goals.py)
    GoalRow(
        "ray_rps",
        ">= Ray Serve tuned at every concurrency, p50 no worse",
        lambda r: "plughost-ray vs Ray Serve tuned, requests/s (closed loop)",
        ray_goals.ray_rps,
    ),
    GoalRow(
        "ray_cpu",
        "<= Ray Serve tuned",
        lambda r: "plughost-ray CPU µs per request vs Ray Serve tuned",
        ray_goals.ray_cpu,
    ),
    GoalRow(
        "ray_idle", "<= Ray Serve tuned", lambda r: "idle CPU, plughost-ray", ray_goals.ray_idle
    ),
    GoalRow(
        "ray_deploy",
        "<= Ray serve.run of the same class",
        lambda r: "deploy -> deployed on the Ray backend (median)",
        ray_goals.ray_deploy,
    ),
    GoalRow(
        "ray_redeploy",
        "<= Ray serve.run of the same class",
        lambda r: "redeploy (blue-green) on the Ray backend (median)",
        ray_goals.ray_redeploy,
    ),
    GoalRow(
        "ray_first_deploy",
        "<= Ray serve.run of the same class, both in a fresh cluster",
        lambda r: "first deploy in a fresh cluster on the Ray backend (median, to the route "
        "answering; Ray's own start apart)",
        ray_goals.ray_first_deploy,
    ),
    GoalRow(
        "ray_bluegreen",
        "0",
        lambda r: "failed requests during blue-green redeploys under load on Ray",
        ray_goals.ray_bluegreen,
    ),
)


def evaluate_goals(res: dict[str, Any]) -> list[Goal]:
    return [row.evaluate(res) for row in GOALS]


# -- markdown -----------------------------------------------------------------------------------
def _systems_in(points: dict[str, dict[str, Any]]) -> list[str]:
    present = {s for p in points.values() for s in p}
    return [s for s in SYSTEM_ORDER if s in present]


def _point_sort(point: str) -> tuple[int, float]:
    if point.startswith("c="):
        return (0, float(point[2:]))
    return (1, float(re.sub(r"[^0-9.]", "", point) or 0))


def request_tables(summary: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for plugin, points in summary.items():
        lines += [
            f"### {plugin}",
            "",
            (
                "| load | system | req/s | p50 ms | p90 ms | p99 ms | CPU µs/req | "
                "req/s vs floor | p50 vs floor | failed |"
            ),
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for point in sorted(points, key=_point_sort):
            floor = points[point].get("floor")
            for system in _systems_in({point: points[point]}):
                v = points[point][system]
                ratio = f"{v['rps'] / floor['rps']:.0%}" if floor and floor["rps"] else "-"
                dp50 = (
                    f"+{(v['p50_us'] - floor['p50_us']) / 1000:.2f} ms"
                    if floor and system != "floor"
                    else "-"
                )
                lines.append(
                    f"| {point} | {system} | {v['rps']:,.0f} | {_ms(v['p50_us'])} | "
                    f"{_ms(v['p90_us'])} | {_ms(v['p99_us'])} | {_num(v['cpu_us_per_req'])} | "
                    f"{ratio} | {dp50} | {v['failed']} |"
                )
        lines.append("")
    return lines


def ratio_table(summary: dict[str, Any]) -> list[str]:
    lines = [
        (
            "| plugin | load | system | req/s vs floor | req/s vs Ray Serve defaults | "
            "req/s vs Ray Serve tuned |"
        ),
        "|---|---|---|---:|---:|---:|",
    ]
    for plugin, points in summary.items():
        for point in sorted(points, key=_point_sort):
            row = points[point]
            floor, ray, tuned = row.get("floor"), row.get("ray-serve"), row.get("ray-serve-tuned")
            for system in ("plughost", "plughost-alias", "plughost-ray"):
                v = row.get(system)
                if not v:
                    continue

                def rel(base: dict[str, Any] | None, v: dict[str, Any] = v) -> str:
                    return f"{v['rps'] / base['rps']:.2f}x" if base and base["rps"] else "-"

                lines.append(
                    f"| {plugin} | {point} | {system} | {rel(floor)} | {rel(ray)} | {rel(tuned)} |"
                )
    return lines


def _stats_row(label: str, values: list[float]) -> str:
    if not values:
        return f"| {label} | - | - | - | 0 |"
    return (
        f"| {label} | {statistics.median(values):.3f} | {min(values):.3f} | "
        f"{max(values):.3f} | {len(values)} |"
    )


def render_markdown(res: dict[str, Any], goals: list[Goal]) -> str:
    meta = res["meta"]
    m = meta["machine"]
    v = m["versions"]
    lines = [
        "# plughost benchmarks",
        "",
        f"Run {meta['started']} (profile `{meta['profile']}`, {meta['wall_s']:.0f} s wall).",
        (
            f"Machine: {m['cpu']} x {m['cores']} cores, {m['memory_gb']} GB RAM, "
            f"Linux {m['kernel']}, Python {m['python']}; plughost {v['plughost']}, ray {v['ray']}, "
            f"torch {v['torch']}, uvicorn {v['uvicorn']}."
        ),
        (
            f"Load: {meta['loadgen']}; each run {meta['duration_s']:g} s, {meta['rounds']} "
            "round(s), systems interleaved per load point (A B C, A B C), medians over rounds."
        ),
        (
            f"Other CPU on the machine during the runs (not the system under test, not the load "
            f"generator): median {meta.get('other_cpu_cores_median', 0):.2f} cores, max "
            f"{meta.get('other_cpu_cores_max', 0):.2f}"
            + (" -- noisy: treat the figures as rough" if meta.get("noisy") else "")
            + "."
        ),
        "",
    ]
    for note in meta.get("notes", []):
        lines.append(f"> {note}")
    if meta.get("notes"):
        lines.append("")
    if res.get("skipped"):
        lines += ["Skipped:", ""]
        lines += [f"- **{k}**: {why}" for k, why in res["skipped"].items()]
        lines.append("")

    met = sum(1 for g in goals if g["met"] is True)
    missed = [g for g in goals if g["met"] is False]
    lines += [
        "## Goals",
        "",
        f"{met} met, {len(missed)} missed, {sum(1 for g in goals if g['met'] is None)} n/a.",
        "",
        "| figure | goal | measured | verdict |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {g['figure']} | {g['goal']} | {g['measured']} | {_verdict(g['met'])} |" for g in goals
    ]
    lines.append("")

    if missed:
        lines += ["## Missed goals: likely causes", ""]
        lines += [
            f"- **{g['figure']}**: {cause}"
            for g in missed
            for cause in [likely_cause(g["key"], res)]
        ]
        lines.append("")

    summary = res.get("summary", {})
    lines += [
        "## Request path",
        "",
        (
            "Closed loop at each concurrency (c=N: N connections, each sends its next "
            "request when the last answer arrives); `open@R/s` sends R requests/s whatever "
            "the answers do and measures latency from the scheduled send time. CPU µs/req "
            "is the CPU time of the system's whole process tree (server + replicas, or the "
            "whole Ray cluster) over the run divided by the answered requests."
        ),
        "",
    ]
    lines += request_tables(summary)
    lines += ["### Ratios", ""] + ratio_table(summary) + [""]

    dep = res.get("deploy", {})
    lines += [
        "## Deploys",
        "",
        "| seconds | median | min | max | n |",
        "|---|---:|---:|---:|---:|",
        _stats_row("plughost deploy -> deployed (fresh plugin)", dep.get("plughost", [])),
        _stats_row("plughost redeploy (blue-green) -> deployed", res.get("redeploy", [])),
        _stats_row("Ray Serve serve.run (same class, warm cluster)", dep.get("ray_serve_run", [])),
        _stats_row("plughost on the Ray backend deploy -> deployed", dep.get("plughost_ray", [])),
        _stats_row("plughost deploy, one extra dependency, environment built",
                   res.get("env_deploy", {}).get("cold", [])),
        _stats_row("plughost deploy, one extra dependency, environment reused",
                   res.get("env_deploy", {}).get("warm", [])),
        _stats_row("plughost deploy, same plugin without it",
                   res.get("env_deploy", {}).get("plain", [])),
        "",
    ]
    setup = res.get("setup", {})
    cold = {k: val for k, val in setup.items() if "ray.init" in k}
    if cold:
        lines += [
            "Ray's cold start, not counted above: "
            + ", ".join(f"{k} {val:.1f} s" for k, val in cold.items())
            + ".",
            "",
        ]
    if dep.get("errors"):
        lines += [f"- error: {e}" for e in dep["errors"]] + [""]

    bg = res.get("bluegreen", {})
    if bg:
        lines += [
            "## Redeploys under load",
            "",
            (
                f"{bg['redeploys']} blue-green redeploys while {bg['concurrency']} "
                "connections call the plugin (half through route_prefix, half through the "
                f"alias): {bg['requests']:,} requests, **{bg['failed']} failed**, "
                f"{bg['rps']:,.0f} req/s, p99 {_ms(bg['p99_us'])} ms, max "
                f"{_ms(bg['max_us'])} ms; redeploy median "
                f"{_num(_median(bg['redeploy_s']), '{:.3f}')} s."
            ),
            "",
        ]
        if bg.get("error_samples"):
            lines += [f"- {e}" for e in bg["error_samples"]] + [""]

    mem = res.get("memory", {})
    if mem:
        lines += [
            "## Idle memory",
            "",
            (
                "| plugin | bare python -I importing it | plughost replica | ratio | "
                "Ray Serve replica (defaults) | Ray Serve replica (tuned) |"
            ),
            "|---|---:|---:|---:|---:|---:|",
        ]
        for plugin, e in mem.items():
            bare = e.get("bare", {}).get("rss_kb")
            rep = e.get("plughost", {}).get("rss_kb")

            def mib(kb: int | None) -> str:
                return "-" if not kb else f"{kb / 1024:.1f} MiB"

            lines.append(
                f"| {plugin} | {mib(bare)} | {mib(rep)} | "
                f"{f'{rep / bare:.2f}x' if rep and bare else '-'} | "
                f"{mib(e.get('ray-default', {}).get('rss_kb'))} | "
                f"{mib(e.get('ray-tuned', {}).get('rss_kb'))} |"
            )
        server_rss = next((e.get("plughost_server_rss_kb") for e in mem.values()), None)
        lines += [
            "",
            (
                "RSS, not PSS: shared library pages count in full. plughost server "
                f"process: {(server_rss or 0) / 1024:.1f} MiB."
            ),
            "",
        ]

    st = res.get("status", {})
    if st:
        lines += [
            "## Status endpoint under deployments",
            "",
            (
                f"GET status of {st['deployments']} plugins round-robin at concurrency "
                f"{st['concurrency']} for {st['load_s']:.1f} s, started right after their "
                f"{st['deployments']} deploy POSTs: **{st['rps']:,.0f} req/s**, p50 "
                f"{_ms(st['p50_us'])} ms, **p99 {_ms(st['p99_us'])} ms**, {st['failed']} "
                f"failed ({st['tool']}). {st['deployed_when_load_ended']}/{st['deployments']} "
                "were deployed when the load ended; all after "
                f"{st['all_deployed_after_s']:.1f} s."
            ),
        ]
        quiet = st.get("quiet")
        if quiet:
            lines.append(
                f"The same load with no deployment running: {quiet['rps']:,.0f} req/s, "
                f"p50 {_ms(quiet['p50_us'])} ms, p99 {_ms(quiet['p99_us'])} ms."
            )
        lines.append("")

    q = res.get("queue", {})
    if q:
        lines += [
            "## Deployments queued at once",
            "",
            (
                f"{q['queued']} hash-embedder deployments POSTed at once "
                f"({q['post_all_s']:.2f} s to post): **{q['deployed']}/{q['queued']} deployed "
                f"after {q['total_s']:.1f} s**; final statuses {q['statuses']}; lost "
                f"{q['lost']}. Undeploying all took {q['undeploy_all_s']:.1f} s (uploads "
                f"beforehand: {q['upload_s']:.1f} s)."
            ),
            "",
        ]

    lines += batching_goals.markdown(res)
    lines += startup_goals.markdown(res)
    lines += cgroups_cost.markdown(res)
    lines += cpu_table(summary, res.get("idle_cpu"))
    lines += profile_section(res.get("profile", {}))
    return "\n".join(lines) + "\n"


def cpu_table(summary: dict[str, Any], idle: dict[str, float] | None = None) -> list[str]:
    if not summary:
        return []
    lines = [
        "## CPU per request",
        "",
        (
            "CPU µs per answered request at the highest closed-loop concurrency measured "
            "(server + replicas; for Ray the whole cluster), median over rounds."
        ),
        "",
    ]
    plugins = list(summary)
    lines += ["| system | " + " | ".join(plugins) + " |", "|---|" + "---:|" * len(plugins)]
    for system in SYSTEM_ORDER:
        cells = []
        for plugin in plugins:
            points = [p for p in summary[plugin] if p.startswith("c=")]
            if not points:
                cells.append("-")
                continue
            top = max(points, key=_point_sort)
            v = summary[plugin][top].get(system)
            cells.append(f"{_num(v['cpu_us_per_req'])} ({top})" if v else "-")
        if any(c != "-" for c in cells):
            lines.append(f"| {system} | " + " | ".join(cells) + " |")
    if idle:
        lines += [
            "",
            (
                "CPU with no load at all (background timers, health checks, metrics), "
                "cores: " + ", ".join(f"{k} {v:.3f}" for k, v in idle.items()) + "."
            ),
        ]
    return lines + [""]


def profile_section(prof: dict[str, Any]) -> list[str]:
    lines = ["## Where plughost's time goes (hash16, c=32 and c=1)", ""]
    if not prof or "skipped" in prof:
        return lines + [f"Not profiled: {prof.get('skipped', 'not run')}.", ""]
    load = prof.get("load", {})
    split = prof.get("cpu_split_us_per_req", {})
    lines += [
        (
            "CPU per request by process and thread, from /proc, while serving "
            f"{load.get('rps', 0):,.0f} req/s (p50 {_ms(load.get('p50_us'))} ms):"
        ),
        "",
        "| where | CPU µs/req |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {val:,.0f} |" for k, val in split.items()]
    lines.append(f"| total | {sum(split.values()):,.0f} |")
    lines.append("")
    split1, load1 = prof.get("cpu_split_c1_us_per_req") or {}, prof.get("load_c1") or {}
    if split1:
        lines += [
            (
                f"The same at c=1 ({load1.get('rps', 0):,.0f} req/s, p50 "
                f"{_ms(load1.get('p50_us'))} ms), where every call wakes both processes:"
            ),
            "",
            "| where | CPU µs/req |",
            "|---|---:|",
        ]
        lines += [f"| {k} | {val:,.0f} |" for k, val in split1.items()]
        lines += [f"| total | {sum(split1.values()):,.0f} |", ""]
    replica = prof.get("py_spy_replica") or {}
    if replica.get("samples"):
        lines += [
            (
                f"py-spy on the replica's event-loop thread at c=32 ({replica['samples']} "
                f"samples, raw stacks in `{replica.get('raw_file')}`), innermost frames:"
            ),
            "",
            "| function (self) | share |",
            "|---|---:|",
        ]
        lines += [f"| `{f}` | {val:.1%} |" for f, val in replica.get("top_self", [])[:8]]
        lines.append("")
    spy = prof.get("py_spy", {})
    if "skipped" in spy or not spy.get("samples"):
        return lines + [f"py-spy: {spy.get('skipped', 'no samples')}.", ""]
    lines += [
        (
            f"py-spy on the server's event-loop thread ({spy['samples']} samples, "
            f"non-blocking; raw stacks in `{spy.get('raw_file')}`). Each sample is charged "
            "to its innermost frame outside asyncio/threading. Samples are wall time, not "
            "CPU: a socket write that wakes the replica (or the client) is also charged with "
            "the time the woken process then holds this thread's CPU; CPU is in the tables "
            "above:"
        ),
        "",
        "| category | share of samples |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {val:.0%} |" for k, val in spy.get("by_category", {}).items()]
    lines += ["", "| function (inclusive) | share |", "|---|---:|"]
    lines += [f"| `{f}` | {val:.1%} |" for f, val in spy.get("top_inclusive", [])]
    lines += ["", "| function (self) | share |", "|---|---:|"]
    lines += [f"| `{f}` | {val:.1%} |" for f, val in spy.get("top_self", [])]
    return lines + [""]


def _profile_facts(res: dict[str, Any]) -> str:
    prof = res.get("profile", {})
    split = prof.get("cpu_split_us_per_req", {})
    facts = []
    if split:
        facts.append("CPU/req " + ", ".join(f"{k} {v:,.0f} µs" for k, v in split.items()))
    cats = prof.get("py_spy", {}).get("by_category", {})
    if cats:
        facts.append(
            "server loop samples: " + ", ".join(f"{k} {v:.0%}" for k, v in list(cats.items())[:5])
        )
    return (" Profile: " + "; ".join(facts) + ".") if facts else ""


def likely_cause(key: str, res: dict[str, Any]) -> str:
    if key == "p50":
        return (
            "per request the server's event loop parses HTTP (uvicorn), checks the cached key "
            "and relays the body over a Unix socket to the replica, whose event loop runs the "
            "plugin and sends the reply back: one process hop and two event-loop turns the "
            "floor does not make." + _profile_facts(res)
        )
    if key == "rps_hash":
        return (
            "the server's event-loop thread saturates first (see its CPU per request under "
            '"Where plughost\'s time goes"), with the replica and the load generator '
            "sharing the other core."
        )
    if key == "cpu_req":
        return (
            "plughost's CPU per call is the floor's HTTP work plus a second process: the "
            "server writes the body to the replica's socket and sleeps in epoll until the "
            "reply (a wake-up of each process per call at concurrency 1, which the floor "
            "never pays), and the replica reads, decodes, calls and encodes on an event loop "
            "of its own." + _profile_facts(res)
        )
    if key == "rps_minilm":
        return (
            "compute should dominate, so a gap is CPU the serving layer takes from torch on "
            "2 cores: the server's per-request work and the replica's IPC run beside the "
            "model's two OpenMP threads (both floor and replica compute in one worker "
            "thread)."
        )
    if key in ("deploy", "redeploy"):
        return (
            "deploy time = the POST (a queued row) + queue pick-up (reconcile tick) + unpack "
            "+ a claim of a replica pool member (its plugin's load; a cold replica start when "
            "the pool was empty) + health and example_input calls + route switch (status "
            "rows); bench/README.md has the profile. See the deploy table's spread."
        )
    if key == "status":
        return (
            "status polls are answered from the in-memory release board on the fast path (no "
            "SQL once a plugin was polled), so a miss means CPU taken by the deployments "
            "themselves (replica processes starting on the same cores): compare the quiet "
            "figure measured just before."
        )
    if key == "bluegreen":
        samples = res.get("bluegreen", {}).get("error_samples", [])
        return "requests failed while routes switched: " + ("; ".join(samples) or "see errors")
    if key == "rss":
        mem = res.get("memory", {}).get("hash16", {}).get("plughost", {})
        wrap = mem.get("wrappers_rss_kb")
        extra = (
            f" (sandbox wrapper processes add {wrap / 1024:.1f} MiB more, not counted)"
            if wrap
            else ""
        )
        return (
            "the replica imports plughost's worker runtime (asyncio event loop, orjson, "
            "the socket protocol, the sandbox setup) on top of the plugin" + extra + "."
        )
    if key == "queue":
        return "some deployments did not reach deployed; see the final statuses."
    if key == "upload_stall":
        lines = res.get("upload_stall", {}).get("loop_stall_lines") or []
        if lines:
            return f"the server's event loop was blocked during an upload: {lines[0]}"
        return (
            "no loop stall was logged: the slow calls waited for a CPU (the intake's child "
            "processes, the upload and the rest of the machine share the cores)."
        )
    if key in ray_goals.CAUSE:
        return ray_goals.CAUSE[key]
    return "see the tables above."


# -- README ------------------------------------------------------------------------------------
README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


def readme_block(res: dict[str, Any], goals: list[Goal]) -> str:
    meta = res["meta"]
    m = meta["machine"]
    lines = [
        f"Last full run: {meta['started']}, {m['cpu']} x {m['cores']} cores, "
        f"{m['memory_gb']} GB RAM, Python {m['python']}, ray {m['versions']['ray']}"
        + (" (noisy machine: rough figures)" if meta.get("noisy") else "")
        + ".",
        "",
        "| figure | goal | measured | verdict |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {g['figure']} | {g['goal']} | {g['measured']} | {_verdict(g['met'])} |" for g in goals
    ]
    skipped = res.get("skipped", {})
    if skipped:
        lines += [
            "",
            "Skipped in that run: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) + ".",
        ]
    lines += ["", "Details, ratios and CPU per request: `bench/results/latest.md`."]
    return "\n".join(lines)


def update_readme(path: Path, res: dict[str, Any], goals: list[Goal]) -> bool:
    """Replace the block between the bench markers; False when the markers are missing."""
    text = path.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    new = text[: start + len(README_START)] + "\n" + readme_block(res, goals) + "\n" + text[end:]
    path.write_text(new)
    return True


# -- plot ---------------------------------------------------------------------------------------
def render_png(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = res.get("summary", {})
    plugins = [p for p in summary if any(k.startswith("c=") for k in summary[p])] or ["hash16"]
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {name: palette[i % len(palette)] for i, name in enumerate(SYSTEM_ORDER)}
    fig, axes = plt.subplots(len(plugins), 3, figsize=(15, 4.2 * len(plugins)), squeeze=False)
    for row, plugin in enumerate(plugins):
        points = summary.get(plugin, {})
        closed = sorted((p for p in points if p.startswith("c=")), key=_point_sort)
        for system in _systems_in(points):
            xs = [int(p[2:]) for p in closed if system in points[p]]
            vals = [points[p][system] for p in closed if system in points[p]]
            if not xs:
                continue
            style = {"marker": "o", "label": system, "color": colors[system]}
            axes[row][0].plot(xs, [v["rps"] for v in vals], **style)
            axes[row][1].plot(xs, [v["p50_us"] / 1000 for v in vals], **style)
            axes[row][2].plot(xs, [v["p99_us"] / 1000 for v in vals], **style)
        for col, title in enumerate(("requests/s", "p50 latency (ms)", "p99 latency (ms)")):
            ax = axes[row][col]
            ax.set_title(f"{plugin}: {title}")
            ax.set_xlabel("concurrency (closed loop)")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")  # systems differ by orders of magnitude
            ax.grid(True, alpha=0.3)
        axes[row][0].legend(fontsize=8)
    m = res["meta"]["machine"]
    fig.suptitle(
        f"plughost vs floor vs Ray Serve -- {m['cores']} cores, {m['cpu'][:60]} "
        f"({res['meta']['started']}, profile {res['meta']['profile']})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
