"""Issue 13, server side: deployment history, the status watch (SSE) and /metrics against
a live server with real replicas (local backend, SQLite). Logs: test_logs.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from deploy_support import NS, deploy, infer, plugin_archive, upload, wait_for
from prometheus_client.parser import text_string_to_metric_families
from support import LiveServer, unique_name

FINAL = {"deployed", "failed", "not_deployed"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(home=tmp_path_factory.mktemp("observe"))
    try:
        srv.start(timeout=180)
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def sse_events(c: httpx.Client, path: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Every `data:` event of a server-sent event stream, until the server ends it."""
    events = []
    with c.stream("GET", path, timeout=timeout) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("data: "):
                events.append(orjson.loads(line[6:]))
    return events


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# -- the status watch -----------------------------------------------------------------------
def test_status_watch_streams_each_change_until_deployed(client: httpx.Client) -> None:
    name = unique_name("watch")
    pid = upload(client, name, plugin_archive(name, start_delay=0.3))
    assert deploy(client, pid)["status"] == "queued"
    events = sse_events(client, f"/v1/namespaces/{NS}/plugins/{pid}/status?watch=true")
    statuses = [e["status"] for e in events]
    assert statuses[-1] == "deployed"
    assert all(s not in FINAL for s in statuses[:-1]), statuses
    assert "in_progress" in statuses, statuses
    order = ["queued", "pending", "in_progress", "deployed"]
    assert [order.index(s) for s in statuses] == sorted(order.index(s) for s in statuses)
    # each event has the plain status endpoint's shape
    plain = client.get(f"/v1/namespaces/{NS}/plugins/{pid}/status").json()
    assert set(events[-1]) == set(plain)
    assert events[-1]["plugin_id"] == pid and events[-1]["deployed"] is True


def test_status_watch_of_a_final_state_ends_at_once(client: httpx.Client) -> None:
    name = unique_name("watchidle")
    pid = upload(client, name, plugin_archive(name))
    events = sse_events(client, f"/v1/namespaces/{NS}/plugins/{pid}/status?watch=true", 10)
    assert [e["status"] for e in events] == ["not_deployed"]


def test_status_watch_ends_at_failed_with_the_plugins_error_and_last_log_lines(
    client: httpx.Client,
) -> None:
    name = unique_name("watchfail")
    pid = upload(client, name, plugin_archive(name, fail_init="model file missing"))
    deploy(client, pid)
    events = sse_events(client, f"/v1/namespaces/{NS}/plugins/{pid}/status?watch=true")
    assert events[-1]["status"] == "failed"
    error = events[-1]["error"]
    assert "model file missing" in error
    assert "--- last log lines ---" in error
    assert "Traceback" in error or "RuntimeError" in error.split("--- last log lines ---")[1]


def test_status_watch_needs_a_key_and_a_known_plugin(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        resp = anonymous.get(f"/v1/namespaces/{NS}/plugins/x_1_0_0/status?watch=true")
        assert resp.status_code == 401
        assert resp.json()["error"]["type"] == "AuthenticationError"
    with server.client() as c:
        resp = c.get(f"/v1/namespaces/{NS}/plugins/nope_1_0_0/status?watch=true")
        assert resp.status_code == 404
        assert resp.json()["success"] is False


# -- history --------------------------------------------------------------------------------
def test_history_lists_releases_events_and_alias_moves_with_rollback(
    client: httpx.Client,
) -> None:
    name = unique_name("hist")
    v1 = upload(client, name, plugin_archive(name, "1.0.0", tag="v1"), "1.0.0")
    v2 = upload(client, name, plugin_archive(name, "2.0.0", tag="v2"), "2.0.0")
    for pid in (v1, v2):
        deploy(client, pid)
        wait_for(client, pid, {"deployed"})
    resp = client.post(f"/v1/namespaces/{NS}/plugins/by-name/{name}/rollback",
                       json={"version": "1.0.0"})
    assert resp.status_code == 200, resp.text
    deploy(client, v1)  # a redeploy of v1: a second release of the plugin id
    wait_for(client, v1, {"deployed"})
    time_order = client.get(f"/v1/namespaces/{NS}/plugins/{v1}/deployments").json()
    assert time_order["plugin_id"] == v1 and time_order["name"] == name
    releases = time_order["deployments"]
    assert len(releases) == 2
    newest, older = releases
    assert newest["release_id"] > older["release_id"]
    assert newest["outcome"] == "deployed" and older["outcome"] == "superseded"
    assert [(e["from"], e["to"]) for e in older["events"]] == [
        (None, "queued"), ("queued", "pending"), ("pending", "in_progress"),
        ("in_progress", "deployed"), ("deployed", "superseded")]
    assert older["events"][0]["duration_s"] is None
    assert all(e["duration_s"] >= 0 for e in older["events"][1:])
    assert older["duration_s"] > 0 and older["deployed_at"] and older["finished_at"]
    reasons = [(m["reason"], m["from_version"], m["to_version"])
               for m in time_order["alias_moves"]]
    assert reasons[:3] == [("deploy", "1.0.0", "1.0.0"), ("rollback", "2.0.0", "1.0.0"),
                           ("deploy", "1.0.0", "2.0.0")], reasons
    assert time_order["alias"]["version"] == "1.0.0"
    assert time_order["alias"]["release_id"] == newest["release_id"]


def test_history_of_a_failed_release_says_why(client: httpx.Client) -> None:
    name = unique_name("histfail")
    pid = upload(client, name, plugin_archive(name, fail_init="cannot load weights"))
    deploy(client, pid)
    wait_for(client, pid, {"failed"})
    body = client.get(f"/v1/namespaces/{NS}/plugins/{pid}/deployments").json()
    (rel,) = body["deployments"]
    assert rel["outcome"] == "failed" and "cannot load weights" in rel["error"]
    assert rel["events"][-1]["to"] == "failed"
    assert body["alias"] is None and body["alias_moves"] == []


def test_history_hostile_inputs(client: httpx.Client) -> None:
    resp = client.get(f"/v1/namespaces/{NS}/plugins/missing_1_0_0/deployments")
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "NotFoundError"
    resp = client.get("/v1/namespaces/ns_nope/plugins/x_1_0_0/deployments")
    assert resp.status_code == 404
    name = unique_name("histlim")
    pid = upload(client, name, plugin_archive(name))
    resp = client.get(f"/v1/namespaces/{NS}/plugins/{pid}/deployments", params={"limit": 0})
    assert resp.status_code == 400 and resp.json()["success"] is False


def test_namespaces_lists_what_the_key_reaches(client: httpx.Client) -> None:
    body = client.get("/v1/namespaces").json()
    assert NS in [n["namespace_id"] for n in body["namespaces"]]
    assert body["total"] == len(body["namespaces"])


# -- metrics --------------------------------------------------------------------------------
def test_metrics_count_exactly_the_calls_made(server: LiveServer, client: httpx.Client) -> None:
    name = unique_name("metric")
    pid = upload(client, name, plugin_archive(name))
    deploy(client, pid)
    body, _ = wait_for(client, pid, {"deployed"})
    labels = (("deployment", f"custom_plugin_{pid}"), ("namespace", NS), ("plugin", name),
              ("version", "1.0.0"))

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        resp = client.get("/metrics")
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/plain")
        return metric_samples(resp.text)

    before = scrape()
    for i in range(7):
        assert infer(client, body["route_prefix"], {"text": str(i)}).status_code == 200
    for _ in range(3):
        assert infer(client, body["route_prefix"], {"boom": "x"}).status_code == 500
    assert infer(client, f"/inference/{NS}/{name}", {"text": "alias"}).status_code == 200
    after = scrape()

    def moved(metric: str) -> float:
        key = (metric, labels)
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("plughost_deployment_request_counter_total") == 11
    assert moved("plughost_deployment_error_counter_total") == 3
    assert moved("plughost_deployment_processing_latency_ms_count") == 11
    inf_bucket = ("plughost_deployment_processing_latency_ms_bucket",
                  tuple(sorted((*labels, ("le", "+Inf")))))
    assert after[inf_bucket] - before.get(inf_bucket, 0) == 11
    assert after[("plughost_deployment_processing_queries", labels)] == 0
    assert after[("plughost_deployment_replicas", tuple(sorted((*labels, ("state", "ready")))))] == 1
    assert after[("plughost_deployment_replica_restarts_total", labels)] == 0
    assert after[("plughost_deployments", (("status", "deployed"),))] >= 1
    assert ("plughost_deployment_queue_length", ()) in after
    assert any(k[0] == "plughost_deploy_duration_seconds_count" for k in after)


def test_metrics_count_validation_failures(client: httpx.Client) -> None:
    def failures() -> float:
        text = client.get("/metrics").text
        return metric_samples(text).get(("plughost_validation_failures_total",
                                         (("namespace", NS),)), 0.0)

    before = failures()
    resp = client.post(f"/v1/namespaces/{NS}/plugins", data={"name": "broken_x", "version": "1"},
                       files={"file": ("p.zip", b"not a zip", "application/zip")})
    assert resp.json()["validation_status"] == "failed"
    assert failures() == before + 1


def test_metrics_need_an_admin_key(server: LiveServer, client: httpx.Client) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/metrics").status_code == 401
    limited = server.cli("keys", "create", "--namespace", NS, "--label", "limited")
    key = next(w for w in limited.stdout.split() if w.startswith("ph_"))
    with server.client(key) as c:
        resp = c.get("/metrics")
        assert resp.status_code == 403 and resp.json()["error"]["type"] == "ForbiddenError"


def test_metrics_public_when_configured(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = LiveServer(home=tmp_path_factory.mktemp("public"),
                     extra_env={"PLUGHOST_METRICS_PUBLIC": "true"})
    try:
        srv.start(timeout=180)
        with httpx.Client(base_url=srv.url) as anonymous:
            resp = anonymous.get("/metrics")
            assert resp.status_code == 200
            names = {f.name for f in text_string_to_metric_families(resp.text)}
            assert {"plughost_deployment_request_counter", "plughost_deployments",
                    "plughost_deployment_queue_length"} <= names
    finally:
        srv.stop()


def test_plugin_figures_for_the_dashboard(client: httpx.Client) -> None:
    name = unique_name("figs")
    pid = upload(client, name, plugin_archive(name, replicas=2))
    deploy(client, pid)
    body, _ = wait_for(client, pid, {"deployed"})
    for _ in range(4):
        infer(client, body["route_prefix"], {"text": "x"})
    figs = client.get(f"/v1/namespaces/{NS}/plugins/{pid}/metrics").json()
    assert figs["totals"] == {"requests": 4, "errors": 0, "in_flight": 0}
    assert figs["replicas"] == {"desired": 2, "ready": 2, "restarts": 0}
    assert figs["release_id"] == body["release_id"]
    assert isinstance(figs["series"], list)
