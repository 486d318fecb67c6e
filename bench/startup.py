"""Start-up and memory at rest (issue 27, goal 5), side by side with the floor.

Each round, one after the other:
- ``plughost serve`` on a fresh home (a new SQLite database: its schema migrated, the first
  key created, the sandbox's self-test run): seconds from the process's spawn to the first
  200 of ``/healthz`` (polled every 5 ms), then, after ``settle_s`` with nothing asked of it,
  the server process's resident memory (VmRSS) and that of each process it started;
- the same server started again on that home (the schema already at head);
- the floor (``bench.floor_app``, uvicorn + httptools with hash16 in process): spawn to its
  first answer, and its RSS at rest: what a bare server that does nothing else costs.

Then once (PostgreSQL at 127.0.0.1:5432, else skipped with a note): ``plughost serve`` with
``PLUGHOST_WORKERS=2`` on a fresh database, and the RSS at rest of its supervisor and of each
worker process.

Run by hand: ``python -m bench.startup [--rounds 5]``; writes bench/results/startup.json.
``bench.run`` calls :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import procstat
from bench.plughost_sys import free_port
from bench.systems import start_floor

RESULTS = Path(__file__).resolve().parent / "results" / "startup.json"
POLL_S = 0.005
RSS_GOAL_MIB = 100.0
HEALTHZ_GOAL_S = 1.0


def _wait_ok(
    url: str, proc: subprocess.Popen[bytes], t0: float, timeout: float = 60, any_answer: bool = False
) -> float:
    """Seconds from ``t0`` until ``url`` answers 200 (any answer with ``any_answer``)."""
    with httpx.Client(timeout=1) as client:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"{url}: the process exited during start ({proc.returncode})")
            try:
                if client.get(url).status_code == 200 or any_answer:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(POLL_S)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def _children(pid: int) -> list[dict[str, Any]]:
    out = []
    for child in procstat.tree([pid])[1:]:
        cmd = procstat._cmdline(child)
        out.append({"pid": child, "cmd": cmd[:120], "rss_mib": procstat.rss_kb(child) / 1024})
    return out


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def serve_once(home: Path, settle_s: float, extra_env: dict[str, str] | None = None) -> dict:
    """One ``plughost serve`` on ``home``: spawn -> /healthz 200, then RSS at rest."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGHOST_")}
    env.update(PLUGHOST_HOME=str(home), PLUGHOST_BOOTSTRAP_KEY="ph_bench_startup_key_0001")
    env.update(extra_env or {})
    home.mkdir(parents=True, exist_ok=True)
    log = (home / f"server-{port}.log").open("ab")
    cmd = [sys.executable, "-m", "plughost", "serve", "--port", str(port), "--log-level", "warning"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=home)
    try:
        healthz_s = _wait_ok(f"http://127.0.0.1:{port}/healthz", proc, t0)
        time.sleep(settle_s)
        return {
            "healthz_s": healthz_s,
            "rss_mib": procstat.rss_kb(proc.pid) / 1024,
            "children": _children(proc.pid),
        }
    finally:
        _stop(proc)
        log.close()


def floor_once(work: Path, settle_s: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    floor = start_floor("hash16", work / "logs")
    try:
        up = _wait_ok(f"http://127.0.0.1:{floor.port}/", floor.proc, t0, any_answer=True)
        time.sleep(settle_s)
        return {"answer_s": up, "rss_mib": procstat.rss_kb(floor.proc.pid) / 1024}
    finally:
        floor.stop()


def workers_once(work: Path, settle_s: float) -> dict[str, Any]:
    """``PLUGHOST_WORKERS=2`` on a fresh PostgreSQL database: RSS of each process."""
    try:
        from bench.multiserver import _database, _drop

        name, url = _database()
    except Exception as exc:  # noqa: BLE001 - no PostgreSQL here: reported, not fatal
        return {"skipped": f"no PostgreSQL at 127.0.0.1:5432 ({type(exc).__name__})"}
    try:
        run = serve_once(work / "workers", settle_s,
                         {"PLUGHOST_DATABASE_URL": url, "PLUGHOST_WORKERS": "2"})
    finally:
        _drop(name)
    workers = [c for c in run["children"] if "plughost.server.supervisor" in c["cmd"]]
    return {
        "healthz_s": run["healthz_s"],
        "supervisor_rss_mib": run["rss_mib"],
        "workers_rss_mib": [w["rss_mib"] for w in workers],
        "children": run["children"],
    }


def run(work: Path, rounds: int = 5, settle_s: float = 3.0) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    fresh, again, floor = [], [], []
    for k in range(rounds):
        home = work / f"home{k}"
        fresh.append(serve_once(home, settle_s))
        again.append(serve_once(home, settle_s))
        floor.append(floor_once(work, settle_s))
    med = statistics.median
    out = {
        "rounds": rounds,
        "settle_s": settle_s,
        "fresh": fresh,
        "again": again,
        "floor": floor,
        "fresh_healthz_s": med(r["healthz_s"] for r in fresh),
        "again_healthz_s": med(r["healthz_s"] for r in again),
        "floor_answer_s": med(r["answer_s"] for r in floor),
        "server_rss_mib": med(r["rss_mib"] for r in fresh + again),
        "floor_rss_mib": med(r["rss_mib"] for r in floor),
        "workers": workers_once(work, settle_s),
    }
    return {"startup": out}


def _rows(res: dict[str, Any]) -> dict[str, tuple[str, bool | None]]:
    """(measured, met) of the three issue 27 goal 5 rows, from ``res["startup"]``."""
    st = res.get("startup") or {}
    if "server_rss_mib" not in st:
        why = st.get("skipped", "not measured (python -m bench.startup)")
        return dict.fromkeys(("rss", "workers", "healthz"), (why, None))
    out: dict[str, tuple[str, bool | None]] = {}
    rss = st["server_rss_mib"]
    out["rss"] = (
        f"{rss:.1f} MiB (the floor, uvicorn + hash16 in process: {st['floor_rss_mib']:.1f} MiB)",
        rss <= RSS_GOAL_MIB,
    )
    workers = st.get("workers", {})
    if workers.get("workers_rss_mib"):
        each = ", ".join(f"{w:.1f}" for w in workers["workers_rss_mib"])
        out["workers"] = (
            f"workers {each} MiB; their supervisor {workers['supervisor_rss_mib']:.1f} MiB",
            max(workers["workers_rss_mib"]) <= RSS_GOAL_MIB,
        )
    else:
        out["workers"] = (workers.get("skipped", "not measured"), None)
    start = st["fresh_healthz_s"]
    measured = (
        f"{start:.3f} s (median of {st['rounds']}); the same home again "
        f"{st['again_healthz_s']:.3f} s; the floor's first answer {st['floor_answer_s']:.3f} s"
    )
    out["healthz"] = (measured, start <= HEALTHZ_GOAL_S)
    return out


def judge_rss(res: dict[str, Any]) -> tuple[str, bool | None]:
    return _rows(res)["rss"]


def judge_workers(res: dict[str, Any]) -> tuple[str, bool | None]:
    return _rows(res)["workers"]


def judge_healthz(res: dict[str, Any]) -> tuple[str, bool | None]:
    return _rows(res)["healthz"]


def markdown(res: dict[str, Any]) -> list[str]:
    """The report's section (bench.report.render_markdown)."""
    st = res.get("startup") or {}
    return report(st).splitlines() + [""] if "server_rss_mib" in st else []


def report(res: dict[str, Any]) -> str:
    lines = ["## Start-up and memory at rest (issue 27)", "",
             f"{res['rounds']} rounds, RSS read {res['settle_s']:g} s after /healthz answered.",
             "", "| run | spawn -> first 200 (s) | RSS at rest (MiB) | its processes |",
             "|---|---:|---:|---|"]
    for label, key, t in (("plughost, fresh home", "fresh", "healthz_s"),
                          ("plughost, same home", "again", "healthz_s"),
                          ("floor (hash16)", "floor", "answer_s")):
        for r in res[key]:
            kids = "; ".join(f"{c['cmd'].split(' -m ')[-1][:40]} {c['rss_mib']:.0f}"
                             for c in r.get("children", []))
            lines.append(f"| {label} | {r[t]:.3f} | {r['rss_mib']:.1f} | {kids} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--settle", type=float, default=3.0)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="plughost-bench-startup-") as tmp:
        res = run(Path(tmp), args.rounds, args.settle)["startup"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))
    print(report(res))
    for name, (measured, met) in _rows({"startup": res}).items():
        print(f"{name}: {measured} -> {'MET' if met else 'MISSED' if met is False else 'n/a'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
