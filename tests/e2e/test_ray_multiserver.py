"""Issue 16: two servers on one PostgreSQL database joined to one Ray cluster. The follower
calls the leader's Serve replicas itself (found through the shared replica directory), not
through the leader's /_peer/call: its /healthz counts what it forwarded and what it called
directly."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from deploy_support import NS, deploy, infer, plugin_archive, status, upload, wait_for
from ray_support import RAY_AVAILABLE, RAY_SKIP_REASON, ray_server_env
from support import LiveServer, create_pg_database, drop_pg_database, unique_name

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not RAY_AVAILABLE, reason=RAY_SKIP_REASON),
]


@pytest.fixture(scope="module")
def pair(
    ray_head: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, LiveServer]]:
    url = create_pg_database()
    env = {**ray_server_env(ray_head), "PLUGHOST_REPLICA_START_TIMEOUT_S": "120"}
    # one home: the archive store is the local disk here (servers on several machines share
    # S3), and a new leader unpacks the releases it restores from it
    home = tmp_path_factory.mktemp("ray-multi")
    a = LiveServer(home=home, database_url=url, extra_env=env).start(timeout=120)
    b = LiveServer(home=home, database_url=url, key=a.key, extra_env=env)
    try:
        b.start(timeout=120)
        yield a, b
    finally:
        b.stop()
        a.stop()
        drop_pg_database(url)


def peer_calls(server: LiveServer) -> dict[str, int]:
    health = httpx.get(f"{server.url}/healthz", timeout=10).json()
    return dict(health["peer_calls"])


def test_a_follower_calls_the_leaders_ray_replicas_itself(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    a, b = pair
    assert httpx.get(f"{b.url}/healthz", timeout=10).json()["role"] == "follower"
    name = unique_name("raymulti")
    with a.client() as ca, b.client() as cb:
        pid = upload(ca, name, plugin_archive(name, tag="from-a"))
        deploy(ca, pid)
        body, _ = wait_for(cb, pid, {"deployed", "failed"}, timeout=180)
        assert body["status"] == "deployed", body
        route = f"/inference/{NS}/{name}"
        # the follower connects in the background; until then its calls go to the leader
        deadline = time.monotonic() + 60
        while peer_calls(b)["direct"] == 0:
            assert time.monotonic() < deadline, b.logs()[-3000:]
            resp = infer(cb, route, {"text": "warm"})
            assert resp.status_code == 200, resp.text
            time.sleep(0.2)
        before = peer_calls(b)
        for i in range(40):
            resp = infer(cb, route, {"text": str(i)})
            assert resp.status_code == 200, resp.text
            assert resp.json()["tag"] == "from-a"
        # a plugin error comes back as the same 500 PluginError
        resp = infer(cb, route, {"boom": "x"})
        assert resp.status_code == 500 and resp.json()["error"]["type"] == "PluginError"
        after = peer_calls(b)
        assert after["forwarded"] == before["forwarded"], (before, after)
        assert after["direct"] >= before["direct"] + 40, (before, after)
        # the follower touched nothing: the leader still serves it
        assert infer(ca, route, {"text": "a"}).status_code == 200


def test_the_follower_takes_over_and_serves_the_adopted_application(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    """A follower that joined Ray to follow the directory builds its backend when it leads
    (on the same Ray connection) and brings the dead leader's releases back."""
    a, b = pair
    name = unique_name("raytake")
    with a.client() as ca, b.client() as cb:
        pid = upload(ca, name, plugin_archive(name, tag="before"))
        deploy(ca, pid)
        wait_for(cb, pid, {"deployed"}, timeout=180)
        route = f"/inference/{NS}/{name}"
        assert infer(cb, route, {}).status_code == 200
        a.kill()
        deadline = time.monotonic() + 90
        while httpx.get(f"{b.url}/healthz", timeout=10).json()["role"] != "leader":
            assert time.monotonic() < deadline, b.logs()[-3000:]
            time.sleep(0.2)
        while (resp := infer(cb, route, {"text": "after"})).status_code != 200:
            assert time.monotonic() < deadline, resp.text
            time.sleep(0.5)
        assert resp.json()["tag"] == "before"
        assert status(cb, pid)["status"] == "deployed"
