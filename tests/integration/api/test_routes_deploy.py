"""plughost.api.routes_deploy: deploy (queued answer, rollout options, batch only), status
(the SDK's model, the watch of a final state), undeploy, the realtime test and rollback by
name; 404 for what the key does not reach, 400/422 for bad options."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from inproc import InProcessServer
from mixpeek import models as sdk
from support import unique_name

from .conftest import Deployed, Tenant
from .helpers import NS, error, upload, wait_status

PLUGINS = f"/v1/namespaces/{NS}/plugins"


def test_deploy_answers_queued_with_where_to_look(app: InProcessServer) -> None:
    with app.client() as c:
        pid = upload(c, unique_name())
        resp = c.post(f"{PLUGINS}/{pid}/deploy")
        body = resp.json()
        assert resp.status_code == 200 and body["status"] == "queued", body
        assert body["deployment_name"] == f"custom_plugin_{pid}"
        assert body["route_prefix"] == f"/inference/{NS}/custom_plugin_{pid}"
        assert body["status_endpoint"] == f"{PLUGINS}/{pid}/status"
        assert body["deployment_method"] == "blue_green"
        assert isinstance(body["estimated_completion_seconds"], int)
        assert isinstance(body["queue_position"], int) and body["message"]
        wait_status(c, pid, {"deployed", "failed"})
        undone = c.post(f"{PLUGINS}/{pid}/undeploy").json()
        assert undone["success"] is True and undone["status"] == "not_deployed"
        assert undone["deployment_removed"] is True and undone["plugin_id"] == pid
        assert c.get(f"{PLUGINS}/{pid}/status").json()["status"] == "not_deployed"


def test_deploy_takes_rollout_options(app: InProcessServer) -> None:
    with app.client() as c:
        pid = upload(c, unique_name())
        body = c.post(
            f"{PLUGINS}/{pid}/deploy", json={"strategy": "canary", "canary_steps": [50, 100]}
        ).json()
        assert body["status"] == "queued" and body["deployment_method"] == "canary", body
        wait_status(c, pid, {"deployed", "failed"})
        c.post(f"{PLUGINS}/{pid}/undeploy")


@pytest.mark.parametrize(
    "options",
    [
        {"strategy": "big_bang"},
        {"colour": "blue"},
        {"canary_steps": [50, 40, 100]},
        {"canary_steps": [0, 100]},
        {"bake_seconds": -1},
        {"min_failed_calls": "3"},
        {"max_error_rate": True},
    ],
)
def test_bad_rollout_options_are_a_422(
    app: InProcessServer, deployed: Deployed, options: dict[str, Any]
) -> None:
    with app.client() as c:
        error(
            c.post(f"{PLUGINS}/{deployed.plugin_id}/deploy", json=options), 422, "ValidationError"
        )
        assert c.get(f"{PLUGINS}/{deployed.plugin_id}/status").json()["status"] == "deployed"


def test_deployment_type_batch_only_starts_nothing(app: InProcessServer) -> None:
    with app.client() as c:
        pid = upload(c, unique_name())
        body = c.post(f"{PLUGINS}/{pid}/deploy", params={"deployment_type": "batch_only"}).json()
        assert body["status"] == "deployed" and body["deployment_type"] == "batch_only", body
        assert c.get(f"{PLUGINS}/{pid}/status").json()["status"] == "not_deployed"
        bad = c.post(f"{PLUGINS}/{pid}/deploy", params={"deployment_type": "gpu"})
        assert "deployment_type" in error(bad, 400, "BadRequestError")["message"]


def test_what_the_key_does_not_reach_is_a_404(
    app: InProcessServer, outsider: Tenant, deployed: Deployed
) -> None:
    pid = deployed.plugin_id
    with app.client() as c:
        for path in (
            f"{PLUGINS}/nope_1_0_0/deploy",
            f"{PLUGINS}/nope_1_0_0/undeploy",
            f"{PLUGINS}/nope_1_0_0/realtime/test",
            f"{PLUGINS}/..%2Fx/deploy",
        ):
            error(c.post(path), 404, "NotFoundError")
        error(c.get(f"{PLUGINS}/nope_1_0_0/status"), 404, "NotFoundError")
    with app.client(key=outsider.key) as theirs:
        for path in (
            f"{PLUGINS}/{pid}/deploy",
            f"{PLUGINS}/{pid}/undeploy",
            f"{PLUGINS}/{pid}/realtime/test",
        ):
            error(theirs.post(path), 404, "NotFoundError")
        error(theirs.get(f"{PLUGINS}/{pid}/status"), 404, "NotFoundError")
        theirs_ns = f"/v1/namespaces/{outsider.namespace_id}/plugins"
        error(theirs.post(f"{theirs_ns}/{pid}/deploy"), 404, "NotFoundError")
        error(
            theirs.post(f"{PLUGINS}/by-name/{deployed.name}/rollback", json={"version": "1"}),
            404,
            "NotFoundError",
        )


def test_status_bodies_are_the_sdks_model(app: InProcessServer, deployed: Deployed) -> None:
    with app.client() as c:
        pid = upload(c, unique_name())
        for plugin_id in (pid, deployed.plugin_id):
            body = c.get(f"{PLUGINS}/{plugin_id}/status").json()
            required = [
                f for f, info in sdk.PluginStatusResponse.model_fields.items() if info.is_required()
            ]
            assert all(k in body for k in required), body
            sdk.PluginStatusResponse.from_dict(body)
        live = c.get(f"{PLUGINS}/{deployed.plugin_id}/status").json()
        assert live["status"] == "deployed" and live["route_prefix"] == deployed.route_prefix
        assert c.get(f"{PLUGINS}/{pid}/status").json()["status"] == "not_deployed"


def test_the_watch_of_a_final_status_is_one_event(app: InProcessServer, deployed: Deployed) -> None:
    with app.client() as c:
        resp = c.get(f"{PLUGINS}/{deployed.plugin_id}/status", params={"watch": "true"})
        plain = c.get(f"{PLUGINS}/{deployed.plugin_id}/status").json()
        error(c.get(f"{PLUGINS}/nope_1_0_0/status", params={"watch": "true"}), 404, "NotFoundError")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events = [
        orjson.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: ")
    ]
    assert len(events) == 1 and events[0]["status"] == "deployed"
    # the same body as the plain status (its live figures aside)
    assert set(events[0]) == set(plain)
    stable = ("plugin_id", "namespace_id", "status", "route_prefix", "deployed", "deployed_at")
    assert {k: events[0][k] for k in stable} == {k: plain[k] for k in stable}


def test_realtime_test_reports_success_and_the_plugins_error(
    app: InProcessServer, deployed: Deployed
) -> None:
    path = f"{PLUGINS}/{deployed.plugin_id}/realtime/test"
    with app.client() as c:
        ok = c.post(path, json={"inputs": {"text": "hi"}, "parameters": {"p": 1}}).json()
        assert (
            ok["status"] == "success"
            and ok["inference_name"] == f"custom_plugin_{deployed.plugin_id}"
        )
        assert ok["raw_response"] == {"echo": "hi", "parameters": {"p": 1}}
        assert ok["response_type"] == "dict" and ok["response_keys"] == ["echo", "parameters"]
        empty = c.post(path).json()  # no body: empty inputs and parameters
        assert empty["status"] == "success" and empty["raw_response"]["echo"] is None
        bad = c.post(path, json={"inputs": {"boom": 1}})
        assert bad.status_code == 200 and bad.json()["status"] == "error"
        assert "plugin says boom" in bad.json()["error"]
        error(c.post(path, json={"inputs": [1]}), 422, "ValidationError")


def test_rollback_refuses_what_is_not_deployed(app: InProcessServer, deployed: Deployed) -> None:
    rollback = f"{PLUGINS}/by-name/{deployed.name}/rollback"
    with app.client() as c:
        same = c.post(rollback, json={"version": "v1"}).json()
        assert same["slug"] == deployed.name and same["active_version"] == "1.0.0", same
        assert same["previous_version"] == "1.0.0" and same["message"]
        missing = c.post(rollback, json={"version": "2.0.0"})
        assert "not deployed" in error(missing, 404, "NotFoundError")["message"]
        error(c.post(rollback, json={}), 422, "ValidationError")
        error(c.post(rollback, json={"version": "latest"}), 422, "ValidationError")
        error(
            c.post(f"{PLUGINS}/by-name/9bad/rollback", json={"version": "1"}),
            422,
            "ValidationError",
        )
        assert c.post(deployed.alias, json={"inputs": {"text": "x"}}).status_code == 200
