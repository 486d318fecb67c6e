"""plughost.api.deps over HTTP: the key (401 without a live one), the namespace (404 when
the key's organization or scope does not reach it), the organization scope, and the base URL
the signed URLs start with."""

from __future__ import annotations

import pytest
from inproc import InProcessServer
from support import unique_name

from .conftest import Tenant
from .helpers import NS, error, runtime, upload

NAMESPACE_ROUTES = [
    ("GET", "/v1/namespaces/{ns}/plugins"),
    ("GET", "/v1/namespaces/{ns}/plugins/available"),
    ("GET", "/v1/namespaces/{ns}/plugins/none_1_0_0"),
    ("POST", "/v1/namespaces/{ns}/plugins/none_1_0_0/deploy"),
    ("GET", "/v1/namespaces/{ns}/plugins/none_1_0_0/status"),
    ("GET", "/v1/namespaces/{ns}/batches"),
]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer ph_not_a_key", "ph_bare_key"],
)
def test_a_request_without_a_live_key_is_a_401(
    app: InProcessServer, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with app.anonymous() as c:
        for method, path in NAMESPACE_ROUTES + [("GET", "/v1/plugins"), ("GET", "/v1/namespaces")]:
            resp = c.request(method, path.format(ns=NS), headers=headers)
            error(resp, 401, "AuthenticationError")


def test_the_scheme_word_is_case_insensitive(app: InProcessServer) -> None:
    with app.anonymous() as c:
        resp = c.get(f"/v1/namespaces/{NS}/plugins", headers={"Authorization": f"bearer {app.key}"})
        assert resp.status_code == 200, resp.text


def test_a_revoked_key_is_a_401(app: InProcessServer) -> None:
    accounts = runtime(app).accounts
    key, record = accounts.create_key(label="short-lived")
    with app.client(key=key) as c:
        assert c.get("/v1/plugins").status_code == 200
        accounts.revoke_key(record["key_id"])
        error(c.get("/v1/plugins"), 401, "AuthenticationError")


def test_another_organizations_namespace_answers_404_as_if_absent(
    app: InProcessServer, outsider: Tenant
) -> None:
    with app.client() as mine:
        for method, path in NAMESPACE_ROUTES:
            resp = mine.request(method, path.format(ns=outsider.namespace_id))
            message = error(resp, 404, "NotFoundError")["message"]
            assert outsider.namespace_id in message or "not found" in message
    with app.client(key=outsider.key) as theirs:
        for method, path in NAMESPACE_ROUTES:
            error(theirs.request(method, path.format(ns=NS)), 404, "NotFoundError")
        assert theirs.get(f"/v1/namespaces/{outsider.namespace_id}/plugins").status_code == 200


def test_an_unknown_namespace_is_a_404_naming_it(app: InProcessServer) -> None:
    with app.client() as c:
        message = error(c.get("/v1/namespaces/ns_nowhere/plugins"), 404, "NotFoundError")["message"]
        assert "ns_nowhere" in message


def test_a_key_limited_to_a_namespace_reaches_only_it(
    app: InProcessServer, limited: Tenant
) -> None:
    with app.client(key=limited.key) as c:
        body = c.get(f"/v1/namespaces/{limited.namespace_id}/plugins").json()
        assert body["namespace_id"] == limited.namespace_id and body["total"] == 0
        for method, path in NAMESPACE_ROUTES:
            error(c.request(method, path.format(ns=NS)), 404, "NotFoundError")


def test_the_organization_scope_is_the_keys_organization(
    app: InProcessServer, outsider: Tenant
) -> None:
    with app.client() as mine, app.client(key=outsider.key) as theirs:
        up = mine.post("/v1/plugins/uploads", json={"name": unique_name(), "version": "1.0.0"})
        assert up.status_code == 200, up.text
        assert up.json().get("namespace_id") is None
        listed = theirs.get("/v1/plugins").json()
        assert listed["organization_id"] == outsider.organization_id
        assert listed["plugins"] == [] and listed["total"] == 0


def test_a_namespace_plugin_is_not_an_organization_plugin(app: InProcessServer) -> None:
    with app.client() as c:
        pid = upload(c, unique_name(), realtime=False)
        assert pid in {
            p["plugin_id"] for p in c.get(f"/v1/namespaces/{NS}/plugins").json()["plugins"]
        }
        assert pid not in {p["plugin_id"] for p in c.get("/v1/plugins").json()["plugins"]}
        error(c.get(f"/v1/plugins/{pid}"), 404, "NotFoundError")


def test_signed_urls_start_at_the_requests_base_url(app: InProcessServer) -> None:
    with app.client() as c:
        up = c.post(
            f"/v1/namespaces/{NS}/plugins/uploads", json={"name": "baseurl", "version": "1"}
        )
        assert up.json()["presigned_url"].startswith(f"{app.url}/v1/_store/uploads/"), up.text
