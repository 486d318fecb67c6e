"""plughost.api.routes_org: ``/v1/plugins`` is the organization's registry. Its plugins are
not a namespace's until enabled there, each organization sees its own, and a key limited to
namespaces still reaches its organization's list. (The shared handlers' shapes:
test_plugin_routes.py.)"""

from __future__ import annotations

from inproc import InProcessServer
from support import unique_name

from .conftest import Tenant
from .helpers import NS, archive, error


def test_each_organization_has_its_own_registry(app: InProcessServer, outsider: Tenant) -> None:
    name = unique_name()
    with app.client(key=outsider.key) as theirs:
        up = theirs.post("/v1/plugins/uploads", json={"name": name, "version": "1"}).json()
        app.anonymous().put(up["presigned_url"], content=archive(name))
        done = theirs.post(f"/v1/plugins/uploads/{up['upload_id']}/confirm").json()
        pid = done["plugin_id"]
        listed = theirs.get("/v1/plugins").json()
        assert listed["organization_id"] == outsider.organization_id
        assert [p["plugin_id"] for p in listed["plugins"]] == [pid]
    with app.client() as mine:
        assert pid not in {p["plugin_id"] for p in mine.get("/v1/plugins").json()["plugins"]}
        error(mine.get(f"/v1/plugins/{pid}"), 404, "NotFoundError")
        error(mine.delete(f"/v1/plugins/{pid}"), 404, "NotFoundError")
        # the same name is free in another organization
        again = mine.post("/v1/plugins/uploads", json={"name": name, "version": "1"})
        assert again.status_code == 200, again.text
    with app.client(key=outsider.key) as theirs:
        assert theirs.get(f"/v1/plugins/{pid}").json()["plugin"]["plugin_id"] == pid


def test_an_organization_plugin_is_not_in_a_namespace_list(app: InProcessServer) -> None:
    name = unique_name()
    with app.client() as c:
        up = c.post("/v1/plugins/uploads", json={"name": name, "version": "1"}).json()
        app.anonymous().put(up["presigned_url"], content=archive(name))
        pid = c.post(f"/v1/plugins/uploads/{up['upload_id']}/confirm").json()["plugin_id"]
        ns_ids = {p["plugin_id"] for p in c.get(f"/v1/namespaces/{NS}/plugins").json()["plugins"]}
        assert pid not in ns_ids
        assert pid in {p["plugin_id"] for p in c.get("/v1/plugins").json()["plugins"]}


def test_a_namespace_limited_key_still_reaches_its_organization(
    app: InProcessServer, limited: Tenant
) -> None:
    with app.client(key=limited.key) as c:
        listed = c.get("/v1/plugins")
        assert listed.status_code == 200 and listed.json()["organization_id"] == "org_default"


def test_the_organization_level_has_no_multipart_upload_or_deploy(app: InProcessServer) -> None:
    with app.client() as c:
        name = unique_name()
        resp = c.post(
            "/v1/plugins",
            data={"name": name, "version": "1"},
            files={"file": ("p.zip", archive(name), "application/zip")},
        )
        error(resp, 405, "MethodNotAllowedError")
        error(c.post(f"/v1/plugins/{name}_1_0_0/deploy"), 404, "NotFoundError")
