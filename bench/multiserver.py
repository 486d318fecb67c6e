"""Several servers on one PostgreSQL database (issue 16, item 2): leader failover time and
status-change propagation between two servers.

Two `plughost serve` on one machine, one home (the local archive store), one fresh
PostgreSQL database at 127.0.0.1:5432; the hash embedder deployed.

- failover, ``--rounds`` times (median reported): SIGKILL the leader's process group, then
  (a) seconds until the lease row names the survivor (the takeover) and (b) seconds until a
  call on the survivor's alias route, sent right after the kill, answers 200 (the survivor
  holds it until its restored replica serves). The killed server is started again as the
  next round's follower.
- propagation, ``--changes`` times (median, p90 and max): deploy or undeploy through the
  leader and poll the follower's status endpoint every 2 ms until it shows the change,
  timed from the moment the leader's request is sent (so it includes the API's own time).

Run by hand: ``python -m bench.multiserver [--rounds 5] [--changes 20]``; writes
bench/results/multiserver.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.plughost_sys import NS, PlughostServer, zip_plugin
from bench.systems import PLUGINS

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
RESULTS = Path(__file__).resolve().parent / "results" / "multiserver.json"


def _database() -> tuple[str, str]:
    name = f"plughost_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def _drop(name: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _server(home: Path, url: str, key: str) -> PlughostServer:
    return PlughostServer(home=home, key=key, extra_env={"PLUGHOST_DATABASE_URL": url}).start()


def _leader_port(dsn: str) -> int | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT address FROM leases WHERE name = 'controller' AND expires_at > now()"
        ).fetchone()
    return int(row[0].rsplit(":", 1)[1]) if row else None


def _kill(server: PlughostServer) -> None:
    import os
    import signal

    assert server.proc is not None
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)


def failover_round(
    leader: PlughostServer, survivor: PlughostServer, dsn: str, alias: str
) -> dict[str, float]:
    answered: list[float] = []

    def call() -> None:
        with httpx.Client(timeout=60) as c:
            r = c.post(
                f"{survivor.url}{alias}",
                headers={"Authorization": f"Bearer {survivor.key}"},
                json={"inputs": {"text": "failover"}, "parameters": {}},
            )
            if r.status_code == 200:
                answered.append(time.monotonic())

    _kill(leader)
    killed = time.monotonic()
    caller = threading.Thread(target=call)
    caller.start()
    takeover = None
    while time.monotonic() - killed < 30:
        if _leader_port(dsn) == survivor.port:
            takeover = time.monotonic() - killed
            break
        time.sleep(0.01)
    caller.join(60)
    return {
        "takeover_s": round(takeover, 3) if takeover is not None else float("nan"),
        "serving_s": round(answered[0] - killed, 3) if answered else float("nan"),
    }


def propagation(
    leader: PlughostServer, follower: PlughostServer, plugin_id: str, changes: int
) -> list[float]:
    delays: list[float] = []
    for i in range(changes):
        deploying = i % 2 == 0
        before = follower.status(plugin_id)["status"]
        started = time.monotonic()  # from the request sent: an upper bound (the API's own time)
        if deploying:
            leader.deploy(plugin_id)
        else:
            leader.undeploy(plugin_id)
        while follower.status(plugin_id)["status"] == before and time.monotonic() - started < 5:
            time.sleep(0.002)
        delays.append(time.monotonic() - started)
        if deploying:
            leader.wait_deployed(plugin_id)
        else:
            time.sleep(0.3)
    return delays


def run(rounds: int = 5, changes: int = 20) -> dict[str, Any]:
    """``{"multiserver": ...}`` for bench.run's results (a fresh database, dropped after)."""
    db_name, url = _database()
    dsn = f"postgresql://postgres@127.0.0.1:5432/{db_name}"
    key = "ph_bench_" + uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="plughost-multi-") as tmp:
        home = Path(tmp)
        servers = [_server(home, url, key), _server(home, url, key)]
        try:
            result = _run(servers, home, url, key, dsn, rounds, changes)
        finally:
            for s in servers:
                s.stop()
            _drop(db_name)
    return {"multiserver": result}


def judge(res: dict[str, Any]) -> tuple[str, bool | None]:
    """The GOALS row (bench.report): failover against the issue's 5 s, propagation reported."""
    m = res.get("multiserver") or {}
    if "failover_takeover_median_s" not in m:
        return "not measured (python -m bench.multiserver)", None
    p = m["propagation_ms"]
    text = (
        f"failover: lease taken {m['failover_takeover_median_s']:.2f} s after the leader's "
        f"SIGKILL, a call on the survivor answered after {m['failover_serving_median_s']:.2f} s "
        f"(medians of {len(m['rounds'])}); status change on the other server: median "
        f"{p['median']:.0f} ms, p90 {p['p90']:.0f} ms, max {p['max']:.0f} ms ({p['n']} changes)"
    )
    return text, m["failover_takeover_median_s"] <= 5.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--changes", type=int, default=20)
    args = parser.parse_args()
    result = run(args.rounds, args.changes)["multiserver"]
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _run(
    servers: list[PlughostServer], home: Path, url: str, key: str, dsn: str, rounds: int,
    changes: int,
) -> dict[str, Any]:
    leader, follower = servers
    assert _leader_port(dsn) == leader.port
    archive = zip_plugin(PLUGINS["hash16"])
    pid = leader.upload("multi_hash", archive)
    leader.deploy_and_wait(pid)
    spare = leader.upload("multi_prop", archive)
    delays = propagation(leader, follower, spare, changes)
    done: list[dict[str, float]] = []
    for _ in range(rounds):
        follower.wait_deployed(pid)
        done.append(failover_round(leader, follower, dsn, f"/inference/{NS}/multi_hash"))
        revived = _server(home, url, key)
        servers[servers.index(leader)] = revived
        leader, follower = follower, revived
    return {
        "rounds": done,
        "failover_takeover_median_s": statistics.median(r["takeover_s"] for r in done),
        "failover_serving_median_s": statistics.median(r["serving_s"] for r in done),
        "propagation_ms": {
            "median": round(1000 * statistics.median(delays), 1),
            "p90": round(1000 * sorted(delays)[math.ceil(0.9 * len(delays)) - 1], 1),  # nearest rank
            "max": round(1000 * max(delays), 1),
            "n": len(delays),
        },
        "setup": "2 servers, one machine and home, PostgreSQL 127.0.0.1, local backend, hash16",
    }


if __name__ == "__main__":
    main()
