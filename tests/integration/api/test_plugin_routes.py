"""plughost.api.plugin_routes: the upload, confirm, list, get and delete handlers made once
for the namespace (``/v1/namespaces/{ns}/plugins``) and the organization (``/v1/plugins``).
Each test runs against both prefixes; the answers carry the scope's own id field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from inproc import InProcessServer
from support import unique_name

from .conftest import Tenant
from .helpers import NS, archive, error

PREFIXES = {"namespace": f"/v1/namespaces/{NS}/plugins", "organization": "/v1/plugins"}
SCOPE_FIELD = {
    "namespace": ("namespace_id", NS),
    "organization": ("organization_id", "org_default"),
}


@pytest.fixture(params=sorted(PREFIXES))
def scope(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def register(app: InProcessServer, c: httpx.Client, prefix: str, name: str) -> dict[str, Any]:
    """The presigned flow: create the upload, PUT the archive, confirm it."""
    data = archive(name)
    up = c.post(
        f"{prefix}/uploads",
        json={"name": name, "version": "v1", "description": "d", "file_size_bytes": len(data)},
    )
    assert up.status_code == 200, up.text
    put = app.anonymous().put(up.json()["presigned_url"], content=data)
    assert put.status_code == 200, put.text
    done = c.post(
        f"{prefix}/uploads/{up.json()['upload_id']}/confirm",
        json={"etag": put.headers["etag"], "file_size_bytes": len(data)},
    )
    assert done.status_code == 200, done.text
    return {"upload": up.json(), "confirm": done.json()}


def test_the_presigned_flow_answers_the_contracts_fields(app: InProcessServer, scope: str) -> None:
    prefix, name = PREFIXES[scope], unique_name()
    with app.client() as c:
        flow = register(app, c, prefix, name)
    up, done = flow["upload"], flow["confirm"]
    assert {"upload_id", "presigned_url", "s3_key", "expires_at", "name", "version"} <= set(up)
    assert up["name"] == name and up["version"] == "1.0.0"
    if scope == "namespace":
        assert up["namespace_id"] == NS
    assert done["success"] is True and done["validation_status"] == "passed", done
    assert done["upload_id"] == up["upload_id"] and done["plugin_id"] == f"{name}_1_0_0"
    assert done["feature_uri"] == f"mixpeek://{name}@1.0.0"
    assert isinstance(done["deployment_status"], str) and done["s3_archive_url"]


def test_list_get_and_delete_in_the_scope(app: InProcessServer, scope: str) -> None:
    prefix, name = PREFIXES[scope], unique_name()
    field, value = SCOPE_FIELD[scope]
    pid = f"{name}_1_0_0"
    with app.client() as c:
        register(app, c, prefix, name)
        listed = c.get(prefix).json()
        assert listed["success"] is True and listed[field] == value
        assert listed["total"] == len(listed["plugins"])
        (item,) = [p for p in listed["plugins"] if p["plugin_id"] == pid]
        assert item["deployed"] is False and item["validation_status"] == "passed"
        assert {"name", "version", "feature_uri", "created_at", "updated_at"} <= set(item)
        doc = c.get(f"{prefix}/{pid}").json()
        assert doc["success"] is True and "presigned_download_url" not in doc
        plugin = doc["plugin"]
        assert plugin["plugin_id"] == pid and plugin["description"] == "d"
        assert len(plugin["code_hash"]) == 64 and int(plugin["code_hash"], 16) >= 0
        assert plugin["security_scan_passed"] is True and plugin["deployed"] is False
        gone = c.delete(f"{prefix}/{pid}").json()
        assert gone["success"] is True and gone["plugin_id"] == pid and gone["message"]
        # only a namespace has deployments to report on
        assert ("deployment_removed" in gone) == (scope == "namespace")
        error(c.get(f"{prefix}/{pid}"), 404, "NotFoundError")
        error(c.delete(f"{prefix}/{pid}"), 404, "NotFoundError")
        assert pid not in {p["plugin_id"] for p in c.get(prefix).json()["plugins"]}


def test_an_upload_is_confirmed_only_in_its_own_scope(
    app: InProcessServer, scope: str, outsider: Tenant
) -> None:
    prefix = PREFIXES[scope]
    other = PREFIXES["organization" if scope == "namespace" else "namespace"]
    with app.client() as c:
        up = c.post(f"{prefix}/uploads", json={"name": unique_name(), "version": "1"}).json()
        app.anonymous().put(up["presigned_url"], content=b"PK")
        error(c.post(f"{other}/uploads/{up['upload_id']}/confirm"), 404, "NotFoundError")
    with app.client(key=outsider.key) as theirs:
        error(theirs.post(f"/v1/plugins/uploads/{up['upload_id']}/confirm"), 404, "NotFoundError")


def test_confirm_before_the_put_and_of_unknown_ids_is_a_404(
    app: InProcessServer, scope: str
) -> None:
    prefix = PREFIXES[scope]
    with app.client() as c:
        up = c.post(f"{prefix}/uploads", json={"name": unique_name(), "version": "1"}).json()
        early = c.post(f"{prefix}/uploads/{up['upload_id']}/confirm")
        assert "PUT it to the presigned URL first" in error(early, 404, "NotFoundError")["message"]
        for upload_id in ("upl_nope", "..%2F..%2Fetc"):
            error(c.post(f"{prefix}/uploads/{upload_id}/confirm"), 404, "NotFoundError")


@pytest.mark.parametrize(
    "body",
    [
        {"version": "1"},
        {"name": "ab", "version": "1"},
        {"name": "1abc", "version": "1"},
        {"name": "abc", "version": "1.2.3.4"},
        {"name": "abc", "version": "1", "description": "x" * 501},
        {"name": "abc", "version": "1", "file_size_bytes": 524_288_001},
        {"name": "abc", "version": "1", "file_size_bytes": -1},
        {"name": "abc", "version": "1", "presigned_url_expiration": 59},
        {"name": "abc", "version": "1", "presigned_url_expiration": 86401},
        {"name": "abc", "version": "1", "presigned_url_expiration": "3600"},
    ],
)
def test_an_invalid_upload_request_is_a_422(
    app: InProcessServer, scope: str, body: dict[str, Any]
) -> None:
    with app.client() as c:
        error(c.post(f"{PREFIXES[scope]}/uploads", json=body), 422, "ValidationError")


def test_a_confirm_body_of_the_wrong_types_is_a_422(app: InProcessServer, scope: str) -> None:
    with app.client() as c:
        for body in ({"file_size_bytes": "10"}, {"file_size_bytes": True}, {"etag": 5}):
            resp = c.post(f"{PREFIXES[scope]}/uploads/upl_x/confirm", json=body)
            error(resp, 422, "ValidationError")


def test_a_plugin_id_of_another_shape_is_no_route(app: InProcessServer, scope: str) -> None:
    prefix = PREFIXES[scope]
    with app.client() as c:
        for pid in ("abc", "abc_1_0", "..%2F..%2Fsecrets_1_0_0", "abc_1_0_0_"):
            err = error(c.get(f"{prefix}/{pid}"), 404, "NotFoundError")
            assert err["message"].startswith("no route GET ")


def test_a_plugin_id_with_a_trailing_newline_is_no_route(app: InProcessServer, scope: str) -> None:
    prefix, name = PREFIXES[scope], unique_name()
    with app.client() as c:
        register(app, c, prefix, name)
        assert c.get(f"{prefix}/{name}_1_0_0").status_code == 200
        error(c.get(f"{prefix}/{name}_1_0_0%0A"), 404, "NotFoundError")
