"""plughost.api.routes_namespace: the multipart upload, and organization plugins in a
namespace (``/available``, ``/org/{plugin_id}/enable`` and ``/disable``). The routes shared
with the organization level are in test_plugin_routes.py."""

from __future__ import annotations

import httpx
from inproc import InProcessServer
from support import unique_name

from .conftest import Tenant
from .helpers import NS, archive, error, upload, wait_status

PLUGINS = f"/v1/namespaces/{NS}/plugins"


def org_plugin(app: InProcessServer, c: httpx.Client, realtime: bool = True) -> str:
    """A plugin registered at the organization level; its plugin id."""
    name = unique_name()
    up = c.post("/v1/plugins/uploads", json={"name": name, "version": "1"}).json()
    app.anonymous().put(up["presigned_url"], content=archive(name, realtime=realtime))
    done = c.post(f"/v1/plugins/uploads/{up['upload_id']}/confirm").json()
    assert done["validation_status"] == "passed", done
    return str(done["plugin_id"])


def test_multipart_upload_answers_the_contracts_fields(app: InProcessServer) -> None:
    name = unique_name()
    with app.client() as c:
        resp = c.post(
            PLUGINS,
            data={"name": name, "version": "v2", "description": "mine"},
            files={"file": ("p.zip", archive(name, "2.0.0"), "application/zip")},
        )
    body = resp.json()
    assert resp.status_code == 200 and body["success"] is True, body
    assert body["plugin_id"] == f"{name}_2_0_0" and body["validation_status"] == "passed"
    assert body["feature_uri"] == f"mixpeek://{name}@2.0.0"
    assert body["deployment_status"] == "not_deployed" and body["s3_archive_url"]


def test_a_failed_upload_is_a_200_that_registers_nothing(app: InProcessServer) -> None:
    name = unique_name()
    with app.client() as c:
        resp = c.post(
            PLUGINS,
            data={"name": name, "version": "1"},
            files={"file": ("p.zip", b"not an archive", "application/zip")},
        )
        body = resp.json()
        assert resp.status_code == 200 and body["success"] is False, body
        assert body["validation_status"] == "failed" and body["validation_errors"]
        error(c.get(f"{PLUGINS}/{name}_1_0_0"), 404, "NotFoundError")


def test_an_organization_plugin_is_available_enabled_and_disabled(app: InProcessServer) -> None:
    with app.client() as c:
        pid = org_plugin(app, c)
        available = c.get(f"{PLUGINS}/available").json()
        assert available["organization_id"] == "org_default" and available["namespace_id"] == NS
        assert available["total"] == len(available["plugins"])
        (item,) = [p for p in available["plugins"] if p["plugin_id"] == pid]
        assert item["enabled_in_namespace"] is False and item["validation_status"] == "passed"
        error(c.get(f"{PLUGINS}/{pid}"), 404, "NotFoundError")  # not enabled yet

        on = c.post(f"{PLUGINS}/org/{pid}/enable", json={"params": {"k": 1}, "deploy": False})
        body = on.json()
        assert on.status_code == 200 and body["success"] is True, body
        assert body["deployment_status"] == "skipped" and body["namespace_id"] == NS
        assert body["feature_uri"].startswith("mixpeek://")
        again = c.post(f"{PLUGINS}/org/{pid}/enable", json={"deploy": False}).json()
        assert "already enabled" in again["message"]
        assert [
            p["enabled_in_namespace"]
            for p in c.get(f"{PLUGINS}/available").json()["plugins"]
            if p["plugin_id"] == pid
        ] == [True]
        assert c.get(f"{PLUGINS}/{pid}").json()["plugin"]["plugin_id"] == pid

        off = c.post(f"{PLUGINS}/org/{pid}/disable").json()
        assert off["success"] is True and off["plugin_id"] == pid and "disabled" in off["message"]
        error(c.get(f"{PLUGINS}/{pid}"), 404, "NotFoundError")
        twice = c.post(f"{PLUGINS}/org/{pid}/disable").json()
        assert "was not enabled" in twice["message"]


def test_enable_with_deploy_queues_a_realtime_deployment(app: InProcessServer) -> None:
    with app.client() as c:
        batch_only = org_plugin(app, c, realtime=False)
        done = c.post(f"{PLUGINS}/org/{batch_only}/enable").json()
        assert done["deployment_status"] == "deployed", done  # batch only: nothing to start
        live = org_plugin(app, c)
        queued = c.post(f"{PLUGINS}/org/{live}/enable", json={}).json()
        assert queued["deployment_status"] == "pending", queued
        assert wait_status(c, live, {"deployed", "failed"})["status"] == "deployed"
        off = c.post(f"{PLUGINS}/org/{live}/disable").json()
        assert "deployment removed" in off["message"], off
        error(
            c.post(f"/inference/{NS}/custom_plugin_{live}", json={"inputs": {}}),
            404,
            "NotFoundError",
        )


def test_enable_refuses_unknown_plugins_and_bad_bodies(app: InProcessServer) -> None:
    with app.client() as c:
        error(c.post(f"{PLUGINS}/org/nope_1_0_0/enable"), 404, "NotFoundError")
        error(c.post(f"{PLUGINS}/org/nope_1_0_0/disable"), 404, "NotFoundError")
        ns_plugin = upload(c, unique_name(), realtime=False)  # a namespace plugin is no org one
        error(c.post(f"{PLUGINS}/org/{ns_plugin}/enable"), 404, "NotFoundError")
        pid = org_plugin(app, c, realtime=False)
        for body in ({"deploy": "yes"}, {"deploy": 1}, {"params": [1]}):
            error(c.post(f"{PLUGINS}/org/{pid}/enable", json=body), 422, "ValidationError")
        error(c.post(f"{PLUGINS}/org/not-an-id/enable"), 404, "NotFoundError")


def test_another_organizations_key_reaches_none_of_it(
    app: InProcessServer, outsider: Tenant
) -> None:
    with app.client() as c:
        pid = org_plugin(app, c, realtime=False)
    with app.client(key=outsider.key) as theirs:
        theirs_ns = f"/v1/namespaces/{outsider.namespace_id}/plugins"
        assert pid not in {
            p["plugin_id"] for p in theirs.get(f"{theirs_ns}/available").json()["plugins"]
        }
        error(theirs.post(f"{theirs_ns}/org/{pid}/enable"), 404, "NotFoundError")
        name = unique_name()
        resp = theirs.post(
            PLUGINS,
            data={"name": name, "version": "1"},
            files={"file": ("p.zip", archive(name), "application/zip")},
        )
        error(resp, 404, "NotFoundError")
