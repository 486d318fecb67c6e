"""Issue 14 item 2 end to end: a zero-downtime takeover of a running `plughost serve`.

A second `plughost serve` on the same home and port, SIGHUP, and `plughost restart` each hand
the listening socket, the controller and the replicas over to a new process; under load no
request fails and the same replica processes keep answering.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest
from deploy_support import (
    MANIFEST_TEMPLATE,
    NS,
    PRINTING,
    deploy,
    infer,
    plugin_archive,
    upload,
    wait_for,
)
from ray_support import DB_KINDS
from support import LiveServer, create_pg_database, drop_pg_database, unique_name, zip_bytes

from plughost.config import Settings
from plughost.server.handover import ask

LEGS = [
    pytest.param(db, id=db, marks=[pytest.mark.postgres] if db == "postgres" else [])
    for db in DB_KINDS
]
LOAD_S = 30.0  # SQLite's leg, two takeovers within it
CLIENTS = 16


@pytest.fixture(params=LEGS)
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    url = create_pg_database() if request.param == "postgres" else ""
    try:
        yield url
    finally:
        if url:
            drop_pg_database(url)


class Load:
    """CLIENTS threads, one connection per request; every answer but a 200 is a failure."""

    def __init__(self, server: LiveServer, path: str) -> None:
        self.server, self.path = server, path
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.replicas: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(CLIENTS)]

    def __enter__(self) -> Self:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(60)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                status, body = self._call()
            except OSError as exc:
                with self._lock:
                    self.failures.append(f"{time.monotonic():.2f} {exc!r}")
                continue
            with self._lock:
                if status == 200:
                    self.ok += 1
                    self.replicas[json.loads(body)["replica"]] += 1
                else:
                    self.failures.append(f"{time.monotonic():.2f} {status} {body[:200]!r}")

    def _call(self) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
        try:
            conn.request("POST", self.path, body=b'{"inputs": {}, "parameters": {}}',
                         headers={**self.server.auth, "Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.replicas)


def serving_pid(home: Path, port: int) -> int:
    return int(ask(Settings(home=home, port=port), {"op": "hello"})["pid"])


def wait_gone(pid: int, timeout: float = 60.0) -> float:
    """Seconds until the process ``pid`` is gone (ours or not)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return time.monotonic() - started
        if state == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still runs after {timeout} s")


def wait_new_server(home: Path, port: int, old: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reply = ask(Settings(home=home, port=port), {"op": "hello"})
        except (ConnectionError, OSError, ValueError):
            reply = {}
        if reply.get("pid") not in (None, old) and reply.get("state") == "serving":
            return int(reply["pid"])
        time.sleep(0.1)
    raise AssertionError("no new server took over")


@pytest.mark.slow
def test_takeovers_under_load_fail_no_request_and_keep_the_replicas(
    database_url: str, tmp_path: Path
) -> None:
    """16 clients on a two-replica plugin; a second `plughost serve` takes over, then (SQLite:
    within 30 s of load) SIGHUP makes that one hand over to its own successor: 0 failed
    requests, the same two replica processes answer before and after (none restarted); then
    `plughost restart` does the same. PostgreSQL runs the first takeover only (the lease
    handover; the rest is the same code), to keep the suite's time."""
    sqlite = not database_url
    home = tmp_path / "home"
    first = LiveServer(home=home, database_url=database_url).start()
    name = unique_name("takeover")
    with first.client() as c:
        pid = upload(c, name, plugin_archive(name, replicas=2))
        route = deploy(c, pid)["route_prefix"]
        wait_for(c, pid, {"deployed"})
    second = LiveServer(home=home, database_url=database_url, key=first.key, port=first.port)
    final = 0
    try:
        with Load(first, route) as load:
            started = time.monotonic()
            time.sleep(4)
            before = load.snapshot()
            second.start()  # takeover 1: a second server on the same home and port
            final = second.proc.pid  # type: ignore[union-attr]
            gone = [wait_gone(first.proc.pid)]  # type: ignore[union-attr]
            assert serving_pid(home, first.port) == final
            if sqlite:
                time.sleep(4)
                os.kill(final, signal.SIGHUP)  # takeover 2: the server hands over to its copy
                gone.append(wait_gone(final))
                final = serving_pid(home, first.port)
            time.sleep(max(3.0, LOAD_S - (time.monotonic() - started)) if sqlite else 3.0)
            during = load.snapshot()
        after = {r for r, n in (during - before).items() if n}
        assert not load.failures, (len(load.failures), load.failures[:10])
        assert load.ok > 100, load.ok
        assert len(before) == 2 and after == set(before), (before, during)
        assert max(gone) < 30, gone
        assert "adopted replica" in second.logs(), second.logs()[-3000:]
        if not sqlite:
            return
        # `plughost restart` does the same for the running server (no load)
        done = second.cli("restart", "--port", str(first.port))
        assert done.returncode == 0, done.stdout + done.stderr
        newest = wait_new_server(home, first.port, final)
        assert f"pid {final} handed over to pid {newest}" in done.stdout
        wait_gone(final)
        final = newest
        with Load(first, route) as load:
            time.sleep(1.0)
        assert not load.failures and set(load.replicas) == set(before), load.replicas
    finally:
        if final:
            with contextlib.suppress(ProcessLookupError):
                os.kill(final, signal.SIGTERM)
            wait_gone(final)
        second.stop()
        first.stop()


def test_replica_output_during_a_takeover_is_stored_once(tmp_path: Path) -> None:
    """Calls one after another through a takeover, each printing its number: the log holds
    every line exactly once (the old server stops reading the output file where the new one
    starts), under one replica label."""
    home = tmp_path / "home"
    name = unique_name("tklogs")
    files: dict[str, str | bytes] = {
        "manifest.py": MANIFEST_TEMPLATE.format(name=name, version="1.0.0", replicas=1, extra=""),
        "pipeline.py": "def build_steps(*a, **k):\n    return {'steps': [], 'prepare': None}\n",
        "realtime.py": PRINTING,
    }
    first = LiveServer(home=home).start()
    second = LiveServer(home=home, key=first.key, port=first.port)
    words: list[str] = []
    stop = threading.Event()

    def calls() -> None:
        with first.client() as c:
            while not stop.is_set():
                word = f"w{len(words)}"
                assert infer(c, route, {"word": word}).status_code == 200
                words.append(word)
                time.sleep(0.02)

    try:
        with first.client() as c:
            pid = upload(c, name, zip_bytes(files))
            route = deploy(c, pid)["route_prefix"]
            wait_for(c, pid, {"deployed"})
        caller = threading.Thread(target=calls)
        caller.start()
        time.sleep(1)
        second.start()
        wait_gone(first.proc.pid)  # type: ignore[union-attr]
        time.sleep(1)
        stop.set()
        caller.join(60)
        with second.client() as c:

            def lines() -> list[dict[str, Any]]:
                got = c.get(f"/v1/namespaces/{NS}/plugins/{pid}/logs", params={"limit": 5000})
                return [x for x in got.json()["lines"] if x["line"].startswith("called with")]

            deadline = time.monotonic() + 20
            while len(lines()) < len(words) and time.monotonic() < deadline:
                time.sleep(0.2)
            mine = lines()
    finally:
        stop.set()
        second.stop()
        first.stop()
    assert len(words) > 20, words
    assert [x["line"] for x in mine] == [f"called with {w}" for w in words], (len(mine), len(words))
    assert len({x["replica"] for x in mine}) == 1, mine
