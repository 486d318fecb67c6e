"""Serving across the server's own restarts (issue 14): requests failed and seconds until the
route serves again across (a) a SIGKILL of `plughost serve` and a new start on the same home,
port and database, whose replicas outlive the server and are adopted by the new one (the
row counts how many of the replica processes recorded before the kill serve after it), (b)
takeovers (plughost.server.handover): a second `plughost serve` on the same home and port, started
while the first one serves, takes its listening socket, controller and replicas over; the
row counts the requests failed across ``takeovers`` of them in a row, the longest gap between
two answers, how long each new process took from its start to serving alone, and how many of
the replica processes of the first server still serve at the end.

Load: ``concurrency`` threads, one connection per request (plain http.client, so a dropped
connection shows as what it is). A failed attempt is counted, and its thread waits 50 ms
before the next one, so the count reflects time down as well as requests lost.

Run by hand: ``python -m bench.restart [--concurrency 8] [--seconds 3]``.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import signal
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.plughost_sys import PlughostServer, zip_plugin
from bench.systems import PLUGINS

BODY = b'{"inputs": {"text": "restart"}, "parameters": {}}'
RETRY_PAUSE_S = 0.05


class ConnectionPerRequestLoad:
    """Threads calling one route, each request on its own connection; times every answer."""

    def __init__(self, server: PlughostServer, path: str, concurrency: int) -> None:
        self.server, self.path, self.concurrency = server, path, concurrency
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok: list[float] = []  # monotonic times of 200 answers
        self.failed: list[tuple[float, str]] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(concurrency)]

    def _once(self) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
        try:
            conn.request("POST", self.path, body=BODY, headers={
                "Authorization": f"Bearer {self.server.key}", "Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                code = self._once()
                why = "" if code == 200 else f"HTTP {code}"
            except Exception as exc:  # noqa: BLE001 - every failure is a figure
                why = type(exc).__name__
            now = time.monotonic()
            with self.lock:
                if why:
                    self.failed.append((now, why))
                else:
                    self.ok.append(now)
            if why:
                time.sleep(RETRY_PAUSE_S)

    def start(self) -> ConnectionPerRequestLoad:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(30)


def _wait_healthy(server: PlughostServer, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise RuntimeError("server did not come back")


def _replica_processes(home: Path) -> set[tuple[int, int]]:
    """(pid, start time) of the local replicas the registry records (backends.replica_registry)."""
    found = set()
    for path in (home / "replicas").glob("*.json"):
        record = json.loads(path.read_text())
        found.add((int(record["pid"]), int(record["start_time"])))
    return found


def kill_and_start(home: Path, concurrency: int = 8, seconds: float = 3.0) -> dict[str, Any]:
    """(a): SIGKILL the server under load, start it again on the same home and port."""
    server = PlughostServer(home=home).start()
    again: PlughostServer | None = None
    try:
        pid = server.upload("bench_restart", zip_plugin(PLUGINS["hash16"]))
        server.deploy_and_wait(pid)
        path = f"/inference/ns_default/custom_plugin_{pid}"
        load = ConnectionPerRequestLoad(server, path, concurrency).start()
        try:
            time.sleep(seconds)
            before = _replica_processes(home)
            killed = time.monotonic()
            assert server.proc is not None
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(10)
            again = PlughostServer(home=home, key=server.key, port=server.port).start()
            healthy = _wait_healthy(again)
            time.sleep(seconds)
            after = _replica_processes(home)
        finally:
            load.stop()
    finally:
        server.stop()
        if again is not None:
            again.stop()
    figures = _kill_start_figures(load, concurrency, killed, healthy)
    figures.update(replicas_before=len(before), replicas_adopted=len(before & after))
    return figures


def _kill_start_figures(
    load: ConnectionPerRequestLoad, concurrency: int, killed: float, healthy: float
) -> dict[str, Any]:
    after = [t for t in load.ok if t > killed]
    served = min(after) if after else None
    failed_after = [why for t, why in load.failed if t >= killed]
    return {
        "concurrency": concurrency,
        "requests": len(load.ok) + len(load.failed),
        "failed": len(load.failed),
        "failed_kinds": dict(Counter(failed_after)),
        "down_s": None if served is None else round(served - killed, 3),
        "serves_after_healthz_s": None if served is None else round(served - healthy, 3),
        "healthz_after_kill_s": round(healthy - killed, 3),
    }


def _serving_pid(home: Path, port: int) -> int | None:
    """The pid of the server answering on this home's control socket once it serves alone."""
    from plughost.config import Settings
    from plughost.server.handover import ask

    try:
        reply = ask(Settings(home=home, port=port), {"op": "hello"}, timeout=2.0)
    except (ConnectionError, OSError, ValueError):
        return None
    return int(reply["pid"]) if reply.get("state") == "serving" else None


def _one_takeover(old: PlughostServer) -> tuple[PlughostServer, dict[str, float]]:
    """Start a second server on ``old``'s home and port; wait until it serves alone and the
    old process has exited."""
    started = time.monotonic()
    new = PlughostServer(home=old.home, key=old.key, port=old.port).start()
    deadline = started + 120
    serving = asked = None  # the old server's control socket goes when it is asked
    while serving is None and time.monotonic() < deadline:
        pid = _serving_pid(old.home, old.port)
        if pid is None and asked is None:
            asked = time.monotonic()
        if pid == new.pid:
            serving = time.monotonic()
        time.sleep(0.02)
    assert old.proc is not None
    old.proc.wait(max(1.0, deadline - time.monotonic()))
    if serving is None or asked is None:
        raise RuntimeError("the new server did not take over")
    return new, {
        "serving_alone_s": round(serving - started, 3),
        "handover_s": round(serving - asked, 3),
        "old_exited_s": round(time.monotonic() - started, 3),
    }


def takeover(
    home: Path, concurrency: int = 16, seconds: float = 3.0, takeovers: int = 2
) -> dict[str, Any]:
    """(b): ``takeovers`` takeovers in a row under load, ``seconds`` of load around each."""
    server = PlughostServer(home=home).start()
    servers = [server]
    steps: list[dict[str, float]] = []
    try:
        pid = server.upload("bench_takeover", zip_plugin(PLUGINS["hash16"]))
        server.deploy_and_wait(pid)
        path = f"/inference/ns_default/custom_plugin_{pid}"
        before = _replica_processes(home)
        load = ConnectionPerRequestLoad(server, path, concurrency).start()
        try:
            time.sleep(seconds)
            first = time.monotonic()
            for _ in range(takeovers):
                server, step = _one_takeover(server)
                servers.append(server)
                steps.append(step)
                time.sleep(seconds)
        finally:
            load.stop()
        after = _replica_processes(home)
    finally:
        for each in servers:
            each.stop()
    return _takeover_figures(load, concurrency, first, steps) | {
        "replicas_before": len(before),
        "replicas_kept": len(before & after),
        "replicas_started": len(after - before),  # a takeover that adopts starts none
    }


def _takeover_figures(
    load: ConnectionPerRequestLoad, concurrency: int, first: float, steps: list[dict[str, float]]
) -> dict[str, Any]:
    times = sorted(load.ok)
    gaps = [b - a for a, b in itertools.pairwise(times) if b > first]
    return {
        "implemented": True,
        "concurrency": concurrency,
        "takeovers": len(steps),
        "requests": len(load.ok) + len(load.failed),
        "failed": len(load.failed),
        "failed_kinds": dict(Counter(why for _, why in load.failed)),
        "max_gap_s": round(max(gaps), 3) if gaps else None,
        "steps": steps,
    }


def run(work: Path, concurrency: int = 8, seconds: float = 3.0) -> dict[str, Any]:
    try:
        kill_start = kill_and_start(work / "kill-start", concurrency, seconds)
    except Exception as exc:  # noqa: BLE001 - a bench step that failed is reported, not fatal
        kill_start = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        taken = takeover(work / "takeover", 16, seconds)
    except Exception as exc:  # noqa: BLE001 - a bench step that failed is reported, not fatal
        taken = {"implemented": True, "error": f"{type(exc).__name__}: {exc}"}
    return {"kill_start": kill_start, "takeover": taken}


def judge_kill_start(res: dict[str, Any]) -> tuple[str, bool | None]:
    """Goal (a): only the requests in flight on the killed process fail."""
    ks = res.get("restart", {}).get("kill_start")
    if not ks:
        return "-", None
    if "error" in ks:
        return f"error: {ks['error']}", None
    in_flight = sum(
        n for kind, n in ks["failed_kinds"].items() if kind != "ConnectionRefusedError"
    )
    measured = (
        f"{ks['failed']} failed of {ks['requests']} ({ks['failed_kinds']}); route serves again "
        f"{ks['down_s']} s after the kill, {ks['serves_after_healthz_s']} s after /healthz; "
        f"{ks.get('replicas_adopted', 0)} of {ks.get('replicas_before', 0)} replicas adopted"
    )
    return measured, ks["failed"] == in_flight and in_flight <= ks["concurrency"]


def judge_takeover(res: dict[str, Any]) -> tuple[str, bool | None]:
    """Goal (b): 0 failed across a takeover."""
    tk = res.get("restart", {}).get("takeover")
    if not tk:
        return "-", None
    if not tk.get("implemented"):
        return "not built yet (issue 14 item 2)", None
    if "error" in tk:
        return f"error: {tk['error']}", None
    serving = ", ".join(f"{s['serving_alone_s']:.2f}" for s in tk["steps"])
    handover = ", ".join(f"{s['handover_s']:.2f}" for s in tk["steps"])
    measured = (
        f"{tk['failed']} failed of {tk['requests']} across {tk['takeovers']} takeovers "
        f"({tk['concurrency']} connections, one per request); longest gap between answers "
        f"{tk['max_gap_s']} s; new server serving alone {serving} s after its start "
        f"(handover from the old one's pause {handover} s); "
        f"{tk['replicas_kept']} of {tk['replicas_before']} replicas kept, "
        f"{tk.get('replicas_started', '?')} started"
    )
    return measured, tk["failed"] == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-restart-") as work:
        print(json.dumps(run(Path(work), args.concurrency, args.seconds), indent=2))


if __name__ == "__main__":
    main()
