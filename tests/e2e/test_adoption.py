"""Issue 14 item 1 end to end on the local backend: replicas outlive the server process.

A SIGKILLed server's replicas keep running; the next server on the same home and database
adopts them (the same replicas answer, none restarted), stops the orphans (an undeployed
release's, a bad secret's) and starts only what is missing; a deliberate stop leaves nothing
behind unless PLUGHOST_KEEP_REPLICAS_ON_STOP says so.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_support import (
    MANIFEST_TEMPLATE,
    NS,
    PRINTING,
    deploy,
    infer,
    plugin_archive,
    status,
    upload,
    wait_for,
)
from ray_support import DB_KINDS
from sqlalchemy import create_engine, text
from support import LiveServer, create_pg_database, drop_pg_database, unique_name, zip_bytes

LEGS = [
    pytest.param(db, id=db, marks=[pytest.mark.postgres] if db == "postgres" else [])
    for db in DB_KINDS
]


@pytest.fixture(params=LEGS)
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    url = create_pg_database() if request.param == "postgres" else ""
    try:
        yield url
    finally:
        if url:
            drop_pg_database(url)


def records(home: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((home / "replicas").glob("*.json"))]


def running(pid: int, start_time: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    fields = raw[raw.rindex(b")") + 2 :].split()
    return fields[0] not in (b"Z", b"X") and int(fields[19]) == start_time


def wait_until(check: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return bool(check())


def replicas_answering(c: Any, route: str, calls: int = 12) -> set[str]:
    answers = [infer(c, route, {}) for _ in range(calls)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return {a.json()["replica"] for a in answers}


def deployed(server: LiveServer, name: str, replicas: int = 1) -> tuple[str, str]:
    with server.client() as c:
        pid = upload(c, name, plugin_archive(name, replicas=replicas))
        route = deploy(c, pid)["route_prefix"]
        wait_for(c, pid, {"deployed"})
    return pid, route


def _one_connection_call(server: LiveServer, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("POST", path, body=b'{"inputs": {}, "parameters": {}}',
                     headers={**server.auth, "Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_sigkill_under_load_the_next_server_adopts_the_same_replicas(
    database_url: str, tmp_path: Path
) -> None:
    """SIGKILL while 8 clients call a two-replica plugin, start again: the same replica
    processes answer (none restarted), the route serves within 1 s of /healthz, and no poll
    says deployed while the route does not answer 200."""
    home = tmp_path / "home"
    first = LiveServer(home=home, database_url=database_url).start()
    pid, route = deployed(first, unique_name("adopt"), replicas=2)
    with first.client() as c:
        before = replicas_answering(c, route)
    started = {(r["pid"], r["start_time"]) for r in records(home)}
    assert len(before) == 2 and len(started) == 2
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                _one_connection_call(first, route)
            except (OSError, http.client.HTTPException):  # the kill cuts calls mid-answer
                time.sleep(0.05)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    again = LiveServer(home=home, database_url=database_url, key=first.key, port=first.port)
    polls: list[tuple[float, str, bool, int]] = []
    try:
        time.sleep(1.0)
        first.kill()
        assert all(running(p, s) for p, s in started), "the replicas died with the server"
        again.start()
        healthy = time.monotonic()
        with again.client() as c:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(polls) < 40:
                body = status(c, pid)
                code = infer(c, route, {}).status_code
                polls.append((time.monotonic() - healthy, body["status"], body["deployed"], code))
            after = replicas_answering(c, route)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        again.stop()
        first.stop()
    served = [p for p in polls if p[3] == 200]
    assert served and served[0][0] < 1.0, polls[:5]
    lying = [p for p in polls if (p[1] == "deployed" or p[2]) and p[3] != 200]
    assert not lying, lying
    assert polls[-1][1:] == ("deployed", True, 200), polls[-3:]
    assert after == before, (before, after)
    assert "adopted replica" in again.logs()


def test_a_replica_of_a_release_undeployed_meanwhile_is_stopped(
    database_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    first = LiveServer(home=home, database_url=database_url).start()
    pid, route = deployed(first, unique_name("orphan"))
    left = records(home)
    first.kill()
    assert left and all(running(r["pid"], r["start_time"]) for r in left)
    url = database_url or f"sqlite:///{home / 'plughost.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE releases SET status = 'not_deployed' WHERE plugin_id = :p"),
                     {"p": pid})
    engine.dispose()
    again = LiveServer(home=home, database_url=database_url, key=first.key).start()
    try:
        assert wait_until(lambda: not any(running(r["pid"], r["start_time"]) for r in left))
        assert wait_until(lambda: not records(home))
        with again.client() as c:
            assert infer(c, route, {}).status_code == 404
    finally:
        again.stop()


def test_a_replica_with_a_bad_secret_is_not_adopted(database_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = LiveServer(home=home, database_url=database_url).start()
    pid, route = deployed(first, unique_name("badsecret"))
    with first.client() as c:
        before = replicas_answering(c, route, 3)
    first.kill()
    (path,) = (home / "replicas").glob("*.json")
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "secret": "00" * 32}))
    again = LiveServer(home=home, database_url=database_url, key=first.key).start()
    try:
        with again.client() as c:
            wait_for(c, pid, {"deployed"})
            after = replicas_answering(c, route, 3)
        assert wait_until(lambda: not running(record["pid"], record["start_time"]))
        assert after and not after & before, (before, after)
        assert "adopted replica" not in again.logs()
    finally:
        again.stop()


def test_sigterm_leaves_no_replica_behind(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = LiveServer(home=home).start()
    deployed(server, unique_name("term"), replicas=2)
    left = records(home)
    assert len(left) == 2
    server.stop()
    assert not any(running(r["pid"], r["start_time"]) for r in left)
    assert not records(home)


def test_keep_on_stop_leaves_them_for_the_next_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keep = {"PLUGHOST_KEEP_REPLICAS_ON_STOP": "true"}
    first = LiveServer(home=home, extra_env=keep).start()
    pid, route = deployed(first, unique_name("keep"), replicas=2)
    with first.client() as c:
        before = replicas_answering(c, route)
    first.stop()
    left = records(home)
    assert len(left) == 2 and all(running(r["pid"], r["start_time"]) for r in left)
    again = LiveServer(home=home, key=first.key).start()
    try:
        with again.client() as c:
            wait_for(c, pid, {"deployed"})
            assert replicas_answering(c, route) == before
    finally:
        again.stop()
    assert not any(running(r["pid"], r["start_time"]) for r in left)


def test_an_adopted_replica_s_output_still_reaches_the_log_store(tmp_path: Path) -> None:
    """The replica writes into a file of the server's home; the next server reads it on from
    where the dead one stopped, under the same replica label."""
    home = tmp_path / "home"
    name = unique_name("logs")
    files: dict[str, str | bytes] = {
        "manifest.py": MANIFEST_TEMPLATE.format(name=name, version="1.0.0", replicas=1, extra=""),
        "pipeline.py": "def build_steps(*a, **k):\n    return {'steps': [], 'prepare': None}\n",
        "realtime.py": PRINTING,
    }
    first = LiveServer(home=home).start()
    with first.client() as c:
        pid = upload(c, name, zip_bytes(files))
        route = deploy(c, pid)["route_prefix"]
        wait_for(c, pid, {"deployed"})
        assert infer(c, route, {"word": "before"}).status_code == 200
    first.kill()
    again = LiveServer(home=home, key=first.key).start()
    try:
        with again.client() as c:
            wait_for(c, pid, {"deployed"})
            assert infer(c, route, {"word": "after"}).status_code == 200

            def lines() -> list[dict[str, Any]]:
                got = c.get(f"/v1/namespaces/{NS}/plugins/{pid}/logs", params={"limit": 100})
                return list(got.json()["lines"])

            assert wait_until(lambda: any("called with after" in x["line"] for x in lines()))
            mine = [x for x in lines() if x["line"].startswith("called with")]
    finally:
        again.stop()
    assert [x["line"] for x in mine] == ["called with before", "called with after"], mine
    assert len({x["replica"] for x in mine}) == 1, mine
