"""Issue 16, item 2: several `plughost serve` on one PostgreSQL database (same machine, same
home, local backend), and the refusal of a second server on one SQLite file."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from batch_support import submit, upload_example, wait_batch
from deploy_support import NS, deploy, infer, plugin_archive, status, upload, wait_for
from support import EXAMPLES, LiveServer, create_pg_database, drop_pg_database, unique_name

pytestmark = pytest.mark.postgres


def _pair(home: Path, url: str) -> tuple[LiveServer, LiveServer]:
    a = LiveServer(home=home, database_url=url).start()
    b = LiveServer(home=home, database_url=url, key=a.key)
    try:
        b.start()
    except BaseException:
        a.stop()
        raise
    return a, b


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    url = create_pg_database()
    a, b = _pair(tmp_path_factory.mktemp("multi"), url)
    try:
        yield a, b
    finally:
        b.stop()
        a.stop()
        drop_pg_database(url)


def _pg(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_deploy_through_a_is_served_and_reported_deployed_by_b(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    a, b = pair
    name = unique_name("multi")
    with a.client() as ca, b.client() as cb:
        pid = upload(ca, name, plugin_archive(name, tag="from-a"))
        deploy(ca, pid)
        body, _ = wait_for(cb, pid, {"deployed", "failed"})
        assert body["status"] == "deployed", body
        assert body["deployed"] is True
        for route in (body["route_prefix"], f"/inference/{NS}/{name}"):
            resp = infer(cb, route, {"text": "hi"})
            assert resp.status_code == 200, resp.text
            assert resp.json()["tag"] == "from-a"
        # the plugin's own error crosses the forward as the same 500 PluginError
        resp = infer(cb, body["route_prefix"], {"boom": "x"})
        assert resp.status_code == 500 and resp.json()["error"]["type"] == "PluginError"
        # and the other way: deployed through the follower, served by the leader
        name2 = unique_name("multi")
        pid2 = upload(cb, name2, plugin_archive(name2, tag="from-b"))
        deploy(cb, pid2)
        body2, _ = wait_for(ca, pid2, {"deployed", "failed"})
        assert body2["status"] == "deployed", body2
        assert infer(ca, f"/inference/{NS}/{name2}", {}).json()["tag"] == "from-b"
        wait_for(cb, pid2, {"deployed"}, timeout=1.0)  # B follows within a second
        deadline = time.monotonic() + 1.0  # the alias is written right after the release
        while (reply := infer(cb, f"/inference/{NS}/{name2}", {})).status_code != 200:
            assert time.monotonic() < deadline, reply.text
            time.sleep(0.02)
        assert reply.json()["tag"] == "from-b"
        # undeployed through B: both stop serving it
        assert cb.post(f"/v1/namespaces/{NS}/plugins/{pid2}/undeploy").status_code == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            replies = [infer(c, f"/inference/{NS}/{name2}", {}) for c in (ca, cb)]
            codes = {r.status_code for r in replies}
            if codes == {404}:
                break
            time.sleep(0.1)
        assert codes == {404}, [(r.status_code, r.text[:300]) for r in replies]
        assert status(ca, pid2)["status"] == status(cb, pid2)["status"] == "not_deployed"
        # deleted through B: A forgets it too
        assert cb.delete(f"/v1/namespaces/{NS}/plugins/{pid2}").status_code == 200
        deadline = time.monotonic() + 2
        while ca.get(f"/v1/namespaces/{NS}/plugins/{pid2}/status").status_code != 404:
            assert time.monotonic() < deadline, "A still answers for a plugin deleted on B"
            time.sleep(0.05)


def test_a_status_change_shows_on_the_other_server_within_a_second(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    a, b = pair
    name = unique_name("prop")
    with a.client() as ca, b.client() as cb:
        pid = upload(ca, name, plugin_archive(name))
        assert status(cb, pid)["status"] == "not_deployed"  # loaded into B's board first
        deploy(ca, pid)
        started = time.monotonic()
        while status(cb, pid)["status"] == "not_deployed":
            assert time.monotonic() - started < 1.0, "B did not see the deploy within 1 s"
            time.sleep(0.01)
        wait_for(cb, pid, {"deployed"})


def test_a_revoked_key_stops_working_on_both_within_a_second(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    a, b = pair
    name = unique_name("keys")
    with a.client() as ca:
        pid = upload(ca, name, plugin_archive(name))
        deploy(ca, pid)
        wait_for(ca, pid, {"deployed"})
    made = a.cli("keys", "create", "--label", "revoke-me", "--json")
    assert made.returncode == 0, made.stderr
    record = json.loads(made.stdout)
    clients = [a.client(key=record["key"]), b.client(key=record["key"])]
    route = f"/inference/{NS}/{name}"
    try:
        for c in clients:  # warm both key caches
            assert infer(c, route, {}).status_code == 200
            assert c.get(f"/v1/namespaces/{NS}/plugins/{pid}/status").status_code == 200
        revoked = a.cli("keys", "revoke", record["key_id"])
        assert revoked.returncode == 0, revoked.stderr
        done = time.monotonic()
        pending = set(range(len(clients)))
        while pending:
            for i in list(pending):
                if infer(clients[i], route, {}).status_code == 401:
                    pending.discard(i)
            assert time.monotonic() - done < 1.5, f"still accepted by server(s) {pending}"
            time.sleep(0.02)
        for c in clients:
            assert c.get(f"/v1/namespaces/{NS}/plugins/{pid}/status").status_code == 401
    finally:
        for c in clients:
            c.close()


def _leader_log(server: LiveServer) -> bool:
    return "now runs the controller" in server.logs()


def test_sigkill_the_leader_during_a_rollout(tmp_path: Path) -> None:
    url = create_pg_database()
    a, b = _pair(tmp_path, url)
    try:
        assert _leader_log(a) and not _leader_log(b)
        name = unique_name("failover")
        with b.client() as cb:
            v1 = upload(cb, name, plugin_archive(name, tag="v1"))
            deploy(cb, v1)
            wait_for(cb, v1, {"deployed"})
            v2 = upload(
                cb,
                name,
                plugin_archive(name, version="2.0.0", tag="v2", start_delay=4),
                version="2.0.0",
            )
            deploy(cb, v2)
            wait_for(cb, v2, {"in_progress"}, timeout=60)

            results: list[int] = []
            stop = threading.Event()

            def hammer() -> None:
                with httpx.Client(base_url=b.url, headers=b.auth, timeout=60) as c:
                    while not stop.is_set():
                        results.append(infer(c, f"/inference/{NS}/{name}", {}).status_code)
                        time.sleep(0.02)

            worker = threading.Thread(target=hammer)
            worker.start()
            time.sleep(0.5)
            a.kill()
            killed = time.monotonic()
            while not _leader_log(b):
                assert time.monotonic() - killed < 5.0, "B did not take over within 5 s"
                time.sleep(0.05)
            body, _ = wait_for(cb, v2, {"deployed", "failed"}, timeout=120)
            time.sleep(0.5)
            stop.set()
            worker.join(60)
            assert body["status"] == "deployed", body
            assert infer(cb, f"/inference/{NS}/{name}", {}).json()["tag"] == "v2"
            # v1's replica outlived its server (its own session): the new leader adopted it
            assert "adopted replica" in b.logs(), b.logs()[-3000:]
            failed = [code for code in results if code != 200]
            assert results and not failed, (
                f"{len(failed)} of {len(results)} calls failed: {failed[:5]}"
            )
        with psycopg.connect(_pg(url)) as conn:
            rows = conn.execute(
                "SELECT plugin_id, status FROM releases WHERE name = %s ORDER BY id", (name,)
            ).fetchall()
            # one release each (v1 keeps serving its own route; the alias moved to v2)
            assert [tuple(r) for r in rows] == [(v1, "deployed"), (v2, "deployed")]
            alias = conn.execute(
                "SELECT r.plugin_id FROM aliases a JOIN releases r ON r.id = a.release_id "
                "WHERE a.name = %s",
                (name,),
            ).fetchone()
            assert alias is not None and alias[0] == v2
            deployed_events = conn.execute(
                "SELECT count(*) FROM release_events e JOIN releases r ON r.id = e.release_id "
                "WHERE r.name = %s AND e.to_status = 'deployed' AND e.from_status <> 'deployed'",
                (name,),
            ).fetchone()
            assert deployed_events is not None and deployed_events[0] == 2  # v1 once, v2 once
    finally:
        b.stop()
        a.stop()
        drop_pg_database(url)


def test_a_second_server_on_one_sqlite_home_is_refused(tmp_path: Path) -> None:
    first = LiveServer(home=tmp_path).start()
    try:
        second = LiveServer(home=tmp_path)
        with pytest.raises(RuntimeError, match="exited early") as info:
            second.start(timeout=30)
        assert "already runs on the SQLite database" in str(info.value)
        assert second.proc is not None and second.proc.returncode == 1
        with first.client() as c:  # the first one is untouched
            assert c.get("/healthz").status_code == 200
    finally:
        first.stop()


def test_a_batch_job_submitted_through_the_follower_runs_once_on_the_leader(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    a, b = pair
    pid = upload_example(b, EXAMPLES / "hash_embedder", unique_name("batch"))
    rows = "".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(50)).encode()
    r = submit(b, pid, rows, "input.jsonl")
    assert r.status_code == 202, r.text
    done = wait_batch(b, r.json()["status_endpoint"])
    assert done["status"] == "completed" and done["rows_done"] == 50, done
    assert wait_batch(a, r.json()["status_endpoint"])["status"] == "completed"
    with psycopg.connect(_pg(a.database_url)) as conn:
        moves = conn.execute(
            "SELECT count(*) FROM batch_job_events WHERE batch_id = %s AND to_status = 'running'",
            (r.json()["batch_id"],),
        ).fetchone()
    assert moves is not None and moves[0] == 1  # claimed once


def test_streams_and_deadlines_cross_the_forward_to_the_leader(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    """Issue 26 through the peer forwarding: the follower streams the leader's items as they
    come, and a deadline or a hang-up at the follower cancels the call in the leader's
    replica."""
    from serving_support import (
        DEADLINE_ASYNC,
        STREAMING,
        check_a_hung_up_client_cancels_its_call,
        check_a_slow_call_ends_in_504_and_is_cancelled,
        check_an_error_mid_stream_ends_it,
        check_ndjson_arrives_item_by_item,
        check_sse_arrives_event_by_event,
        deploy_plugin,
    )

    a, b = pair
    leader, follower = (a, b) if _forwarded(b) is not None else (b, a)
    stream = deploy_plugin(leader, STREAMING, {"num_replicas": 1}, "fstream")
    slow = deploy_plugin(leader, DEADLINE_ASYNC, {"request_timeout_s": 1.5}, "fdeadline")
    for route in (stream, slow):  # the follower routes them too
        deadline = time.monotonic() + 5
        with follower.client() as c:
            while infer(c, route, {"mode": "plain", "sleep": 0}).status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    before = _forwarded(follower)
    check_ndjson_arrives_item_by_item(follower, stream, "async")
    check_sse_arrives_event_by_event(follower, stream)
    check_an_error_mid_stream_ends_it(follower, stream)
    check_a_slow_call_ends_in_504_and_is_cancelled(follower, slow, 1.5)
    check_a_hung_up_client_cancels_its_call(follower, slow)
    assert (_forwarded(follower) or 0) > (before or 0)  # they went through the forward


def _forwarded(server: LiveServer) -> int | None:
    """Calls the server forwarded to the leader (None when it leads)."""
    with server.client() as c:
        health = c.get("/healthz").json()
    if health["role"] == "leader":
        return None
    return int(health["peer_calls"]["forwarded"])
