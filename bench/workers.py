"""`plughost serve --workers N` (issue 16, item 1): req/s and p50/p99 of the hash embedder's
route at c=32 and c=64, one worker against two, side by side in one run.

Two servers run at once, each on its own home and fresh PostgreSQL database at
127.0.0.1:5432 (``--workers`` needs PostgreSQL), one with ``PLUGHOST_WORKERS=1`` and one
with 2, the same plugin deployed on both (its default replica count); the closed-loop load
(wrk when installed, else bench.loadgen) alternates between them, ``rounds`` times per
concurrency, and the median round of each (the lower one of an even count) is reported with the ratio 2 workers / 1 worker.

Run by hand: ``python -m bench.workers [--seconds 5] [--rounds 3]``; writes
bench/results/workers.json. ``bench.run`` calls :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.load import LoadSpec, run_load
from bench.multiserver import _database, _drop
from bench.plughost_sys import PlughostServer, zip_plugin
from bench.systems import PLUGINS

RESULTS = Path(__file__).resolve().parent / "results" / "workers.json"
CONCURRENCY = (32, 64)
WORKERS = (1, 2)


def _start(work: Path, n: int, url: str) -> PlughostServer:
    env = {"PLUGHOST_DATABASE_URL": url, "PLUGHOST_WORKERS": str(n)}
    server = PlughostServer(home=work / f"w{n}", extra_env=env).start()
    pid = server.upload("workers_hash", zip_plugin(PLUGINS["hash16"]))
    server.deploy_and_wait(pid)
    server.route = server.route_url(pid)  # type: ignore[attr-defined]
    # the other workers learn of the deployment through the change feed: wait until every
    # answer is a 200 (a few fresh connections land on each worker)
    spec = LoadSpec(
        urls=[server.route],
        headers=[server.auth_header],
        concurrency=8,  # type: ignore[attr-defined]
        duration=1.0,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and run_load(spec)["failed"]:
        time.sleep(0.5)
    return server


def _one(server: PlughostServer, concurrency: int, seconds: float) -> dict[str, Any]:
    spec = LoadSpec(
        urls=[server.route],
        headers=[server.auth_header],  # type: ignore[attr-defined]
        concurrency=concurrency,
        duration=seconds,
    )
    got = run_load(spec)
    return {k: got[k] for k in ("rps", "p50_us", "p99_us", "ok", "failed", "tool")}


def run(work: Path, seconds: float = 5.0, rounds: int = 3) -> dict[str, Any]:
    """The comparison as ``{"workers": {...}}`` (merged into bench.run's results)."""
    work.mkdir(parents=True, exist_ok=True)
    databases = [_database() for _ in WORKERS]
    servers: dict[int, PlughostServer] = {}
    try:
        for n, (_, url) in zip(WORKERS, databases, strict=True):
            servers[n] = _start(work, n, url)
        runs: dict[str, list[dict[str, Any]]] = {}
        for _ in range(rounds):
            for c in CONCURRENCY:
                for n in WORKERS:
                    runs.setdefault(f"c{c}_w{n}", []).append(_one(servers[n], c, seconds))
    finally:
        for server in servers.values():
            server.stop(timeout=60)
        for name, _ in databases:
            _drop(name)
    table: dict[str, Any] = {}
    for key, got in runs.items():
        median = sorted(got, key=lambda r: r["rps"])[(len(got) - 1) // 2]  # lower median
        table[key] = {**median, "rps_all": [round(r["rps"]) for r in got]}
    for c in CONCURRENCY:
        one, two = table[f"c{c}_w1"]["rps"], table[f"c{c}_w2"]["rps"]
        table[f"c{c}_ratio"] = round(two / one, 2) if one else None
    table["setup"] = (
        f"hash16, PostgreSQL 127.0.0.1, local backend, closed loop {seconds:g} s x {rounds} "
        "rounds alternating 1 and 2 workers, median round"
    )
    return {"workers": table}


def judge(res: dict[str, Any]) -> tuple[str, bool | None]:
    """The GOALS row (bench.report): a reported figure, not a goal."""
    table = res.get("workers") or {}
    if "c32_ratio" not in table:
        return "not measured (python -m bench.workers)", None
    parts = []
    for c in CONCURRENCY:
        one, two = table[f"c{c}_w1"], table[f"c{c}_w2"]
        parts.append(
            f"c={c}: {one['rps']:,.0f} -> {two['rps']:,.0f} req/s (x{table[f'c{c}_ratio']}), "
            f"p50 {one['p50_us'] / 1000:.1f} -> {two['p50_us'] / 1000:.1f} ms, "
            f"p99 {one['p99_us'] / 1000:.1f} -> {two['p99_us'] / 1000:.1f} ms"
        )
    return "; ".join(parts), None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plughost-workers-") as tmp:
        result = run(Path(tmp) / uuid.uuid4().hex[:6], args.seconds, args.rounds)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
