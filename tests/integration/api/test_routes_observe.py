"""plughost.api.routes_observe: the namespaces a key reaches, a plugin's deployment
history, its logs (the plain query; ``follow`` streams forever and is left to e2e), its
figures, and ``/metrics`` (an admin key, else 401/403)."""

from __future__ import annotations

import re

from inproc import InProcessServer
from support import unique_name

from .conftest import Deployed, Tenant
from .helpers import NS, error, upload

PLUGINS = f"/v1/namespaces/{NS}/plugins"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_namespaces_are_those_the_key_reaches(
    app: InProcessServer, limited: Tenant, outsider: Tenant
) -> None:
    with app.client() as c:
        body = c.get("/v1/namespaces").json()
        ids = [n["namespace_id"] for n in body["namespaces"]]
        assert NS in ids and limited.namespace_id in ids and outsider.namespace_id not in ids
        assert body["total"] == len(ids)
        assert all(
            set(n) == {"namespace_id", "name", "organization_id", "created_at"}
            for n in body["namespaces"]
        )
    with app.client(key=limited.key) as c:
        assert [n["namespace_id"] for n in c.get("/v1/namespaces").json()["namespaces"]] == [
            limited.namespace_id
        ]
    with app.client(key=outsider.key) as c:
        assert [n["namespace_id"] for n in c.get("/v1/namespaces").json()["namespaces"]] == [
            outsider.namespace_id
        ]


def test_history_lists_the_release_and_its_events(app: InProcessServer, deployed: Deployed) -> None:
    with app.client() as c:
        body = c.get(f"{PLUGINS}/{deployed.plugin_id}/deployments").json()
    assert body["plugin_id"] == deployed.plugin_id and body["name"] == deployed.name
    assert body["namespace_id"] == NS and body["version"] == "1.0.0"
    assert body["alias"]["version"] == "1.0.0"
    release = body["deployments"][-1]
    assert release["version"] == "1.0.0" and release["outcome"] in ("deployed", "running")
    assert [e["to"] for e in release["events"]][:2] == ["queued", "pending"]
    assert all(ISO_Z.match(e["time"]) for e in release["events"])
    assert any(m["reason"] == "deploy" for m in body["alias_moves"])


def test_history_and_logs_refuse_bad_queries(app: InProcessServer, deployed: Deployed) -> None:
    base = f"{PLUGINS}/{deployed.plugin_id}"
    with app.client() as c:
        for limit in (0, 201, -1):
            error(c.get(f"{base}/deployments", params={"limit": limit}), 400, "BadRequestError")
        error(c.get(f"{base}/deployments", params={"limit": "many"}), 422, "ValidationError")
        for limit in (0, 5001):
            error(c.get(f"{base}/logs", params={"limit": limit}), 400, "BadRequestError")
        error(c.get(f"{base}/logs", params={"since": "tomorrow"}), 400, "BadRequestError")
        for path in ("deployments", "logs", "metrics"):
            error(c.get(f"{PLUGINS}/nope_1_0_0/{path}"), 404, "NotFoundError")
            error(
                c.get(f"/v1/namespaces/ns_nowhere/plugins/nope_1_0_0/{path}"), 404, "NotFoundError"
            )


def test_another_organizations_key_sees_no_history_logs_or_figures(
    app: InProcessServer, deployed: Deployed, outsider: Tenant
) -> None:
    with app.client(key=outsider.key) as c:
        for path in ("deployments", "logs", "metrics"):
            error(c.get(f"{PLUGINS}/{deployed.plugin_id}/{path}"), 404, "NotFoundError")


def test_logs_answer_lines_and_a_cursor(app: InProcessServer, deployed: Deployed) -> None:
    with app.client() as c:
        body = c.get(f"{PLUGINS}/{deployed.plugin_id}/logs", params={"limit": 5}).json()
        never = c.get(f"{PLUGINS}/{upload(c, unique_name())}/logs").json()
    assert body["plugin_id"] == deployed.plugin_id and body["namespace_id"] == NS
    assert isinstance(body["lines"], list) and len(body["lines"]) <= 5
    assert isinstance(body["truncated"], bool)
    for line in body["lines"]:
        assert set(line) == {"time", "release_id", "replica", "stream", "line"}
        assert line["stream"] in ("stdout", "stderr", "log")
    assert never["lines"] == [] and never["truncated"] is False


def test_figures_count_the_calls_made(app: InProcessServer, deployed: Deployed) -> None:
    path = f"{PLUGINS}/{deployed.plugin_id}/metrics"
    with app.client() as c:
        before = c.get(path).json()
        for _ in range(3):
            c.post(deployed.route_prefix, json={"inputs": {"text": "x"}})
        c.post(deployed.route_prefix, json={"inputs": {"boom": 1}})
        after = c.get(path).json()
    assert after["plugin_id"] == deployed.plugin_id and after["status"] == "deployed"
    assert isinstance(after["release_id"], int)
    assert after["replicas"]["desired"] == 1
    moved = {k: after["totals"][k] - before["totals"][k] for k in ("requests", "errors")}
    assert moved == {"requests": 4, "errors": 1} and after["totals"]["in_flight"] == 0
    assert isinstance(after["series"], list)


def test_metrics_need_an_admin_key(app: InProcessServer, limited: Tenant, outsider: Tenant) -> None:
    with app.anonymous() as c:
        error(c.get("/metrics"), 401, "AuthenticationError")
    for key in (limited.key, outsider.key):
        with app.client(key=key) as c:
            assert "admin key" in error(c.get("/metrics"), 403, "ForbiddenError")["message"]
    with app.client() as c:
        resp = c.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    assert "plughost_deployment_queue_length" in resp.text
