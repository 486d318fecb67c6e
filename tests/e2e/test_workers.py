"""Issue 16, item 1: `plughost serve --workers N` (here PLUGHOST_WORKERS=2 on PostgreSQL):
both workers answer the API, the status endpoint and inference (each answer names its
worker); blue-green redeploys under load fail no call; a worker SIGKILLed under load costs
at most its in-flight requests, the parent starts it again and the route keeps answering.
SQLite refuses more than one worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from deploy_support import NS, deploy, plugin_archive, upload, wait_for
from support import LiveServer, create_pg_database, drop_pg_database, unique_name

from plughost.backends.local.registry import ReplicaRegistry, is_running

pytestmark = pytest.mark.postgres

HEADER = "x-plughost-worker"


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def stop_and_wait(pid: int) -> None:
    """SIGSTOP, then wait until the process is stopped: kill() returns before the signal takes
    effect, and a connection the process accepted meanwhile would hang with it."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 30
    while (state := Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "T":
        assert time.monotonic() < deadline, f"process {pid} did not stop (state {state})"
        time.sleep(0.01)


def fresh(server: LiveServer, method: str, path: str, **kw: object) -> httpx.Response:
    """One request on a new connection (so the kernel hands it to either worker)."""
    timeout = kw.pop("timeout", 30)
    with httpx.Client(base_url=server.url, headers=server.auth, timeout=timeout) as c:  # type: ignore[arg-type]
        return c.request(method, path, **kw)  # type: ignore[arg-type]


def leader_pid(url: str) -> int:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        holder = conn.execute("SELECT holder FROM leases").fetchone()
    assert holder is not None
    return int(holder[0].split("#")[2])


@pytest.fixture()
def database() -> Iterator[str]:
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


def test_two_workers_answer_and_one_killed_under_load_is_replaced(
    tmp_path: Path, database: str
) -> None:
    server = LiveServer(
        home=tmp_path / "home", database_url=database, extra_env={"PLUGHOST_WORKERS": "2"}
    )
    server.start()
    try:
        with server.client() as c:
            pid = upload(c, unique_name("workers"), plugin_archive(unique_name("w"), replicas=2))
            route = deploy(c, pid)["route_prefix"]
            wait_for(c, pid, {"deployed"})
        body = {"inputs": {"text": "hi"}, "parameters": {}}
        seen: dict[str, set[int]] = {"healthz": set(), "status": set(), "infer": set()}
        deadline = time.monotonic() + 30
        while min(len(s) for s in seen.values()) < 2 and time.monotonic() < deadline:
            for kind, method, path, kw in (
                ("healthz", "GET", "/healthz", {}),
                ("status", "GET", f"/v1/namespaces/{NS}/plugins/{pid}/status", {}),
                ("infer", "POST", route, {"json": body}),
            ):
                reply = fresh(server, method, path, **kw)
                assert reply.status_code == 200, reply.text
                if kind == "status":
                    assert reply.json()["status"] == "deployed", reply.text
                seen[kind].add(int(reply.headers[HEADER]))
        assert all(len(s) == 2 for s in seen.values()), seen
        workers = seen["infer"]
        assert seen["healthz"] == workers == seen["status"]
        assert all(parent_of(w) == server.proc.pid for w in workers)  # type: ignore[union-attr]

        # blue-green redeploys under load: a worker that called the old replicas itself
        # goes on to the new release, so no call fails
        codes: Counter[int] = Counter()
        done = threading.Event()

        def keep_calling() -> None:
            with server.client() as c:
                while not done.is_set():
                    codes[c.post(route, json=body).status_code] += 1

        callers = [threading.Thread(target=keep_calling) for _ in range(4)]
        for t in callers:
            t.start()
        try:
            for _ in range(2):
                with server.client() as c:
                    deploy(c, pid)
                    time.sleep(0.5)
                    wait_for(c, pid, {"deployed"})
                time.sleep(0.5)
        finally:
            done.set()
            for t in callers:
                t.join(60)
        assert set(codes) == {200}, codes

        victim = leader_pid(database)  # the harder case: the worker that runs the replicas
        assert victim in workers
        # the other worker calls the replicas itself, not through the leader: with the
        # leader frozen (for less than its lease's 3 s) it still answers
        (other,) = workers - {victim}
        stop_and_wait(victim)
        try:
            frozen_at, answers = time.monotonic(), []
            while time.monotonic() - frozen_at < 1.2:
                reply = fresh(server, "POST", route, json=body, timeout=3)
                answers.append((reply.status_code, int(reply.headers[HEADER])))
        finally:
            os.kill(victim, signal.SIGCONT)
        assert answers and set(answers) == {(200, other)}, answers
        results: Counter[str] = Counter()
        answered: set[int] = set()
        stop = threading.Event()
        killed_at: list[float] = []
        last_ok: list[float] = []

        def load() -> None:
            while not stop.is_set():
                try:
                    reply = fresh(server, "POST", route, json=body)
                except httpx.HTTPError as exc:
                    results[f"error {type(exc).__name__}"] += 1
                    continue
                if reply.status_code == 200:
                    results["ok"] += 1
                    answered.add(int(reply.headers[HEADER]))
                    if killed_at:
                        last_ok.append(time.monotonic())
                else:
                    results[f"status {reply.status_code}"] += 1

        clients = [threading.Thread(target=load) for _ in range(8)]
        for t in clients:
            t.start()
        time.sleep(3)
        os.kill(victim, signal.SIGKILL)
        killed_at.append(time.monotonic())
        deadline = time.monotonic() + 40
        replaced = None
        while time.monotonic() < deadline and replaced is None:
            time.sleep(0.2)
            new = answered - workers
            replaced = next(iter(new), None)
        time.sleep(2)
        stop.set()
        for t in clients:
            t.join(60)
        assert replaced is not None, (results, answered, server.logs()[-4000:])
        assert parent_of(replaced) == server.proc.pid  # type: ignore[union-attr]
        failed = sum(n for k, n in results.items() if k != "ok")
        assert failed <= 8, results  # at most the requests in flight on the killed worker
        assert results["ok"] > 30, results
        assert last_ok and last_ok[-1] > killed_at[0] + 2, results
        # the route still answers on both workers
        for _ in range(10):
            assert fresh(server, "POST", route, json=body).status_code == 200
    finally:
        server.stop(timeout=60)
    assert server.proc is not None and server.proc.returncode == 0
    for w in workers | {replaced}:
        assert not Path(f"/proc/{w}").exists() or parent_of(w) != server.proc.pid
    left = ReplicaRegistry(tmp_path / "home" / "replicas").load()
    assert not [r for r in left if is_running(r)], left  # the leader stopped its replicas


def test_sqlite_refuses_more_than_one_worker(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGHOST_")}
    env["PLUGHOST_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-m", "plughost", "serve", "--port", "0", "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "--workers 2 needs PostgreSQL" in done.stderr, done.stderr
