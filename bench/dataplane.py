"""Request-path runs: latency and throughput per system, CPU per request, idle memory, profile."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx

from bench import procstat
from bench.load import BODY, LoadSpec, run_load
from bench.plughost_sys import release_replica_pids
from bench.settings import Profile
from bench.systems import PLUGINS, SYSTEM_ORDER, Endpoint, Systems

log = logging.getLogger("bench")


def _point_name(mode: str, value: float) -> str:
    return f"c={int(value)}" if mode == "closed" else f"open@{value:g}/s"


def measure(endpoint: Endpoint, spec: LoadSpec, prefer_wrk: bool) -> dict[str, Any]:
    """One load run with CPU accounting: the system's process trees, the machine, the rest."""
    cpu0 = procstat.tree_cpu_seconds(endpoint.roots)
    machine0 = procstat.machine_cpu_seconds()
    result = run_load(spec, prefer_wrk=prefer_wrk)
    cpu = procstat.tree_cpu_seconds(endpoint.roots) - cpu0
    machine = procstat.machine_cpu_seconds() - machine0
    duration = result["duration_s"] or spec.duration
    other = max(0.0, machine - cpu - result["loadgen_cpu_s"])
    result.update(
        system_cpu_s=cpu,
        cpu_us_per_req=(cpu / result["ok"] * 1e6) if result["ok"] else None,
        other_cpu_cores=other / duration,
    )
    return result


def warm(endpoints: list[Endpoint], seconds: float, prefer_wrk: bool) -> None:
    for ep in endpoints:
        if seconds > 0:
            run_load(
                LoadSpec([ep.url], headers=ep.headers, concurrency=8, duration=seconds),
                prefer_wrk=prefer_wrk,
            )
        else:
            httpx.post(ep.url, content=BODY, headers=_headers(ep), timeout=60)


def _headers(ep: Endpoint) -> dict[str, str]:
    out = {"Content-Type": "application/json"}
    for h in ep.headers:
        k, _, v = h.partition(":")
        out[k.strip()] = v.strip()
    return out


def run_matrix(systems: Systems, profile: Profile, prefer_wrk: bool) -> list[dict[str, Any]]:
    """Every (plugin, load point): round 1 runs each system once, round 2 again, and so on."""
    runs: list[dict[str, Any]] = []
    order = {name: i for i, name in enumerate(SYSTEM_ORDER)}
    for plugin, concurrencies in profile.points.items():
        eps = sorted(
            (e for e in systems.endpoints if e.plugin == plugin), key=lambda e: order[e.system]
        )
        if not eps:
            continue
        points: list[tuple[str, float]] = [("closed", c) for c in concurrencies]
        if plugin in profile.open_loop:
            points.append(("open", profile.open_loop[plugin]))
        for mode, value in points:
            for rnd in range(profile.rounds):
                for ep in eps:
                    spec = LoadSpec(
                        [ep.url],
                        headers=ep.headers,
                        mode=mode,
                        concurrency=int(value) if mode == "closed" else 0,
                        rate=value if mode == "open" else 0.0,
                        duration=profile.duration_s,
                    )
                    try:
                        res = measure(ep, spec, prefer_wrk)
                    except (
                        RuntimeError,
                        OSError,
                        ValueError,
                        KeyError,
                        subprocess.SubprocessError,
                    ) as exc:  # reported, not fatal
                        res = {"error": f"{type(exc).__name__}: {exc}"}
                    res.update(
                        system=ep.system,
                        plugin=plugin,
                        point=_point_name(mode, value),
                        mode=mode,
                        value=value,
                        round=rnd,
                    )
                    runs.append(res)
                    log.info(
                        "%-16s %-8s %-12s r%d  %s",
                        ep.system,
                        plugin,
                        res["point"],
                        rnd,
                        _brief(res),
                    )
    return runs


def _brief(res: dict[str, Any]) -> str:
    if "error" in res:
        return "ERROR " + res["error"]
    cpu = res.get("cpu_us_per_req")
    return (
        f"{res['rps']:9.0f} req/s  p50 {res['p50_us'] / 1000:7.2f} ms  "
        f"p99 {res['p99_us'] / 1000:7.2f} ms  fail {res['failed']}  "
        f"cpu/req {cpu or 0:7.0f} us  other {res['other_cpu_cores']:.2f} cores"
    )


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """plugin -> point -> system -> medians over rounds (rps, p50_us, p99_us, cpu, failed)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        if "error" not in r:
            groups[(r["plugin"], r["point"], r["system"])].append(r)
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for (plugin, point, system), rs in groups.items():
        cpus = [r["cpu_us_per_req"] for r in rs if r.get("cpu_us_per_req") is not None]
        out.setdefault(plugin, {}).setdefault(point, {})[system] = {
            "rps": statistics.median(r["rps"] for r in rs),
            "p50_us": statistics.median(r["p50_us"] for r in rs),
            "p90_us": statistics.median(r["p90_us"] for r in rs),
            "p99_us": statistics.median(r["p99_us"] for r in rs),
            "cpu_us_per_req": statistics.median(cpus) if cpus else None,
            "failed": sum(r["failed"] for r in rs),
            "rounds": len(rs),
            "other_cpu_cores": statistics.median(r["other_cpu_cores"] for r in rs),
            "tool": rs[0]["tool"],
        }
    return out


def idle_cpu(systems: Systems, seconds: float) -> dict[str, float]:
    """CPU cores each system burns with no load at all (timers, health checks, metrics)."""
    groups: dict[str, list[int]] = {}
    for ep in systems.endpoints:
        name = "floor" if ep.system == "floor" else ep.system.replace("-alias", "")
        groups.setdefault(name, [])
        for root in ep.roots:
            if root not in groups[name]:
                groups[name].append(root)
    before = {k: procstat.tree_cpu_seconds(v) for k, v in groups.items()}
    time.sleep(seconds)
    return {k: (procstat.tree_cpu_seconds(v) - before[k]) / seconds for k, v in groups.items()}


# -- idle memory --------------------------------------------------------------------------------
BARE_IMPORT = """
import sys
from pathlib import Path
from plughost.replica.loader import load_plugin
load_plugin(Path(sys.argv[1]))
with open("/proc/self/status") as fh:
    rss = next(int(l.split()[1]) for l in fh if l.startswith("VmRSS:"))
with open("/proc/self/smaps_rollup") as fh:
    pss = next((int(l.split()[1]) for l in fh if l.startswith("Pss:")), 0)
print(rss, pss)
"""


def bare_python_rss(plugin: str) -> dict[str, int]:
    """RSS of `python -I` that imports the plugin (with the same loader) and builds it."""
    out = subprocess.run(
        [sys.executable, "-I", "-c", BARE_IMPORT, str(PLUGINS[plugin])],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=PLUGINS[plugin],
        check=False,
        env={"PATH": os.environ.get("PATH", ""), "HF_HUB_OFFLINE": "1", "LANG": "C.UTF-8"},
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-500:])
    rss, pss = (int(v) for v in out.stdout.split()[-2:])
    return {"rss_kb": rss, "pss_kb": pss}


def plughost_replica(server: Any, plugin_id: str) -> dict[str, Any] | None:
    """RSS of the replica of a plugin's live release, found by its release id in the server's
    replica records. A sandbox may wrap the interpreter (bwrap -> bwrap -> python): the
    biggest process of the chain is the replica, the rest are reported as wrappers."""
    release = server.status(plugin_id).get("release_id")
    mine = release_replica_pids(server.home, release)[:1]
    if not mine:
        return None
    chain = procstat.tree(mine)
    replica = max(chain, key=procstat.rss_kb)
    wrappers = [p for p in chain if p != replica]
    return {
        "pid": replica,
        "rss_kb": procstat.rss_kb(replica),
        "pss_kb": procstat.pss_kb(replica),
        "wrappers_rss_kb": sum(procstat.rss_kb(p) for p in wrappers),
        "wrappers": len(wrappers),
    }


def replica_memory(systems: Systems, plugins: list[str]) -> dict[str, Any]:
    """Idle replica RSS on plughost (and Ray Serve) next to the bare interpreter's."""
    out: dict[str, Any] = {}
    for plugin in plugins:
        entry: dict[str, Any] = {}
        try:
            entry["bare"] = bare_python_rss(plugin)
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
            entry["bare_error"] = str(exc)
        server = systems.plughost
        pid = systems.plugin_ids.get(plugin)
        if server is not None and pid is not None:
            found = plughost_replica(server, pid)
            if found is not None:
                entry["plughost"] = found
            else:
                entry["plughost_error"] = "replica process not found under the server"
        for variant, host in systems.ray_hosts.items():
            pids = host.replica_pids(plugin)
            if pids:
                w = max(pids, key=procstat.rss_kb)
                entry[f"ray-{variant}"] = {
                    "pid": w,
                    "rss_kb": procstat.rss_kb(w),
                    "pss_kb": procstat.pss_kb(w),
                }
        if systems.plughost is not None:
            entry["plughost_server_rss_kb"] = procstat.rss_kb(systems.plughost.pid)
        out[plugin] = entry
    return out


# -- profile ------------------------------------------------------------------------------------
def py_spy_path() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else None


def _thread_split(
    server_pid: int,
    replica_pid: int | None,
    ok: int,
    before: dict[int, dict[int, float]],
    after: dict[int, dict[int, float]],
) -> dict[str, float]:
    """CPU µs per request of: server event loop, server other threads, replica loop, replica
    other threads (the plugin call thread)."""
    out: dict[str, float] = defaultdict(float)
    for pid, role in ((server_pid, "server"), (replica_pid, "replica")):
        if pid is None:
            continue
        for tid, secs in after.get(pid, {}).items():
            delta = secs - before.get(pid, {}).get(tid, 0.0)
            part = "event loop (main thread)" if tid == pid else "other threads"
            out[f"{role}: {part}"] += delta / ok * 1e6 if ok else 0.0
    return dict(out)


def profile_plughost(
    systems: Systems, seconds: float, prefer_wrk: bool, out_dir: Path
) -> dict[str, Any]:
    """Where plughost's time goes on hash16, at c=32 and at c=1.

    1. per-thread CPU from /proc (server and replica) over a plain load window at each
       concurrency: robust, no sampling;
    2. py-spy (nonblocking, --threads) on the server and on the replica over a second window
       at c=32.
    """
    ep = systems.endpoint("plughost", "hash16")
    server = systems.plughost
    if seconds <= 0:
        return {"skipped": "profile disabled in this profile"}
    if ep is None or server is None:
        return {"skipped": "plughost hash16 endpoint not available"}
    replica = plughost_replica(server, systems.plugin_ids["hash16"])
    replica_pid = replica["pid"] if replica else None
    out: dict[str, Any] = {}
    for concurrency, suffix in ((32, ""), (1, "_c1")):
        load, split = thread_split(
            server.pid, replica_pid, LoadSpec([ep.url], headers=ep.headers,
                                              concurrency=concurrency, duration=seconds),
            prefer_wrk,
        )
        out[f"load{suffix}"] = {k: load[k] for k in ("rps", "p50_us", "p99_us")}
        out[f"cpu_split{suffix}_us_per_req"] = split
    spy = py_spy_path()
    if spy is None:
        out["py_spy"] = {"skipped": "py-spy not installed (pip install -e '.[bench]')"}
        return out
    targets = {"py_spy": server.pid}
    if replica_pid is not None:
        targets["py_spy_replica"] = replica_pid
    found = record_py_spy(
        spy, targets, LoadSpec([ep.url], headers=ep.headers, concurrency=32,
                               duration=seconds + 1), seconds, prefer_wrk, out_dir,
    )
    out.update(found)
    return out


def thread_split(
    server_pid: int, replica_pid: int | None, spec: LoadSpec, prefer_wrk: bool
) -> tuple[dict[str, Any], dict[str, float]]:
    """One load run and the CPU µs per request of each thread group over it (see
    :func:`_thread_split`)."""
    pids = [server_pid] + ([replica_pid] if replica_pid else [])
    before = {p: procstat.thread_cpu_seconds(p) for p in pids}
    load = run_load(spec, prefer_wrk=prefer_wrk)
    after = {p: procstat.thread_cpu_seconds(p) for p in pids}
    return load, _thread_split(server_pid, replica_pid, load["ok"], before, after)


def record_py_spy(
    spy: str,
    targets: dict[str, int],
    spec: LoadSpec,
    seconds: float,
    prefer_wrk: bool,
    out_dir: Path,
) -> dict[str, Any]:
    """py-spy on each target process (name -> pid) at once over one load run: the summary of
    each (:func:`summarize_collapsed`), raw stacks in ``profile-<name>.collapsed.tmp``."""
    out: dict[str, Any] = {}
    err = ""
    for _attempt in range(3):  # attaching right after a fork sometimes fails: retry
        raws = {
            name: out_dir / ("profile-plughost.collapsed.tmp" if name == "py_spy"
                             else f"profile-{name.replace('py_spy_', '')}.collapsed.tmp")
            for name in targets
        }  # *.tmp: not committed
        spies = {}
        for name, pid in targets.items():
            raws[name].unlink(missing_ok=True)
            spies[name] = subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--threads", "--nonblocking", "--duration",
                 str(max(1, int(seconds))), "--rate", "250", "--format", "raw", "--output",
                 str(raws[name])],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        time.sleep(0.3)
        run_load(spec, prefer_wrk=prefer_wrk)
        for name, proc in spies.items():
            try:
                _, err = proc.communicate(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            raw = raws[name]
            if name not in out and raw.exists() and raw.stat().st_size > 0:
                out[name] = summarize_collapsed(raw.read_text())
                out[name]["raw_file"] = raw.name
        if len(out) == len(targets):
            return out
    first = (err or "").strip().splitlines()[:1]
    for name in targets:
        out.setdefault(name, {"skipped": f"py-spy could not sample the process: {first}"})
    return out


CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("database (SQLAlchemy)", ("sqlalchemy/", "sqlite3", "psycopg")),
    ("pydantic", ("pydantic",)),
    ("thread hand-off (run_in_threadpool / anyio)", ("anyio/", "starlette/concurrency.py")),
    (
        "replica IPC (plughost socket client)",
        ("plughost/backends/local/replica.py", "plughost/replica/protocol.py"),
    ),
    ("plughost request path", ("plughost/",)),
    ("FastAPI/Starlette middleware, routing, dependencies", ("fastapi/", "starlette/")),
    ("uvicorn HTTP protocol", ("uvicorn/",)),
    ("logging", ("logging/", "traceback.py")),
    ("JSON (stdlib)", ("json/",)),
]
# Infrastructure frames are skipped when attributing a sample: the first frame outside them
# (from the innermost outwards) says who asked for the work.
GENERIC = (
    "asyncio/",
    "threading.py",
    "queue.py",
    "concurrent/futures",
    "selectors.py",
    "contextlib.py",
    "<frozen",
)
LOOP_FRAMES = ("Runner.run (asyncio/runners.py", "run (asyncio/runners.py")
ROOT_SHARE = 0.6  # inclusive frames above this share are the call stack's roots: not shown


def _frame_file(frame: str) -> str:
    # py-spy raw frames look like "func (path/file.py:123)"
    return frame[frame.rfind("(") + 1 :].rsplit(":", 1)[0] if "(" in frame else frame


def _categorize(frames: list[str]) -> str:
    """Who a sample's time belongs to: the category of its innermost non-generic frame."""
    if frames[-1].startswith(LOOP_FRAMES):
        return "event loop C code (uvloop I/O, httptools) or idle"
    for frame in reversed(frames):
        where = _frame_file(frame)
        if any(g in where for g in GENERIC):
            continue
        for category, needles in CATEGORIES:
            if any(n in where for n in needles):
                return category
        return "other"
    return "asyncio / threading (Python part)"


def summarize_collapsed(text: str, top: int = 12) -> dict[str, Any]:
    """Shares of the server's main (event-loop) thread samples: by category of the innermost
    known frame, top self frames and top inclusive frames."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_category: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        frames = stack.split(";")
        threads = [f for f in frames if f.startswith("thread ")]
        if threads and "MainThread" not in threads[-1]:
            continue
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        count = int(count_s)
        total += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        by_category[_categorize(frames)] += count
    if not total:
        return {"samples": 0}
    shown = [
        (f, n / total)
        for f, n in inclusive.most_common()
        if n / total < ROOT_SHARE and not f.startswith(LOOP_FRAMES)
    ]
    return {
        "samples": total,
        "by_category": {k: v / total for k, v in by_category.most_common()},
        "top_self": [(f, n / total) for f, n in self_time.most_common(top)],
        "top_inclusive": shown[: top + 8],
    }


# -- the request path alone: python -m bench.dataplane ---------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """floor and plughost on hash16 only, closed loop at c=1 and c=32 in interleaved rounds,
    then the profile (per-thread CPU at both, py-spy on server and replica): the issue 27
    request-path figures in a few minutes, written to ``--out`` (JSON) and printed."""
    import argparse
    import json

    from bench.plughost_sys import REPO
    from bench.report import GOALS
    from bench.settings import FULL
    from bench.systems import new_work_dir, setup_floors, setup_plughost

    parser = argparse.ArgumentParser(prog="python -m bench.dataplane", description=main.__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="per run")
    parser.add_argument("--profile-seconds", type=float, default=3.0, help="0: no profile")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "dataplane.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    prefer_wrk = True
    profile = dataclasses.replace(
        FULL, points={"hash16": (1, 32)}, open_loop={}, duration_s=args.seconds,
        rounds=args.rounds, warmup_s=1.0,
    )
    work = new_work_dir(None)
    systems = Systems(work)
    res: dict[str, Any] = {}
    try:
        setup_floors(systems, ["hash16"])
        setup_plughost(systems, ["hash16"], ())
        warm(systems.endpoints, profile.warmup_s, prefer_wrk)
        res["runs"] = run_matrix(systems, profile, prefer_wrk)
        res["summary"] = summarize(res["runs"])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        res["profile"] = profile_plughost(systems, args.profile_seconds, prefer_wrk,
                                          args.out.parent)
    finally:
        systems.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    args.out.write_text(json.dumps(res, indent=1, default=str))
    for row in GOALS:
        if row.key in ("p50", "rps_hash", "cpu_req"):
            goal = row.evaluate(res)
            verdict = {True: "MET", False: "MISSED", None: "-"}[goal["met"]]
            print(f"{goal['figure']}: {goal['measured']} (goal {goal['goal']}) {verdict}")
    others = [r["other_cpu_cores"] for r in res["runs"] if "other_cpu_cores" in r]
    if others:  # the rest of the machine: a busy one starves the floor and skews every ratio
        other = statistics.median(others)
        noisy = " (NOISY: more than 0.25 cores; do not trust the ratios)" if other > 0.25 else ""
        print(f"other CPU during the runs: median {other:.2f} cores{noisy}")
    prof = res.get("profile", {})
    for name in ("cpu_split_c1_us_per_req", "cpu_split_us_per_req"):
        split = prof.get(name) or {}
        print(name, ", ".join(f"{k} {v:.0f}" for k, v in split.items()),
              f"total {sum(split.values()):.0f}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
