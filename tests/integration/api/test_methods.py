"""plughost.api.methods: the ``Allow`` of a 405 and of ``OPTIONS`` lists every method of
every route of the path (the router alone lists the first matching route's), HEAD wherever
GET is, OPTIONS everywhere; a path no route has is a 404."""

from __future__ import annotations

import pytest
from inproc import InProcessServer

from plughost.api.methods import MethodTable

from .helpers import NS, error

PID = "some_plugin_1_0_0"
BATCH = "bat_0123abcd"

ALLOW = [
    (f"/v1/namespaces/{NS}/plugins", "GET, HEAD, POST, OPTIONS"),
    (f"/v1/namespaces/{NS}/plugins/{PID}", "GET, HEAD, DELETE, OPTIONS"),
    (f"/v1/plugins/{PID}", "GET, HEAD, DELETE, OPTIONS"),
    ("/v1/plugins", "GET, HEAD, OPTIONS"),
    ("/v1/plugins/uploads/up_1/confirm", "POST, OPTIONS"),
    (f"/v1/namespaces/{NS}/plugins/{PID}/batches", "GET, HEAD, POST, OPTIONS"),
    (f"/v1/namespaces/{NS}/plugins/{PID}/batches/{BATCH}", "GET, HEAD, DELETE, OPTIONS"),
    (f"/v1/namespaces/{NS}/batches/{BATCH}", "GET, HEAD, DELETE, OPTIONS"),
    (f"/v1/namespaces/{NS}/plugins/by-name/abc/rollback", "POST, OPTIONS"),
    ("/v1/_store/uploads/up_1", "PUT, OPTIONS"),
    ("/metrics", "GET, HEAD, OPTIONS"),
    ("/v1/inference", "POST, OPTIONS"),
]


@pytest.mark.parametrize(("path", "allow"), ALLOW)
def test_options_answers_every_method_of_the_path_without_a_key(
    app: InProcessServer, path: str, allow: str
) -> None:
    with app.anonymous() as c:
        resp = c.options(path)
    assert resp.status_code == 204 and resp.content == b""
    assert resp.headers["allow"] == allow


@pytest.mark.parametrize(("path", "allow"), ALLOW)
def test_a_method_the_path_lacks_is_a_405_with_the_same_allow(
    app: InProcessServer, path: str, allow: str
) -> None:
    wrong = next(m for m in ("PATCH", "PUT", "DELETE") if m not in allow)
    with app.client() as c:
        resp = c.request(wrong, path)
    message = error(resp, 405, "MethodNotAllowedError")["message"]
    assert resp.headers["allow"] == allow
    assert message == f"method {wrong} is not allowed here; allowed: {allow}"


def test_a_path_no_route_has_is_a_404_for_options_too(app: InProcessServer) -> None:
    with app.anonymous() as c:
        error(c.options("/v1/nothing/here"), 404, "NotFoundError")
        # a plugin id is {name}_{X}_{Y}_{Z}: anything else is no route
        error(c.options(f"/v1/namespaces/{NS}/plugins/../../etc/passwd"), 404, "NotFoundError")


def test_head_is_the_get_without_its_body(app: InProcessServer) -> None:
    with app.client() as c:
        get = c.get(f"/v1/namespaces/{NS}/plugins")
        head = c.head(f"/v1/namespaces/{NS}/plugins")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]


def test_the_table_merges_routes_and_orders_methods() -> None:
    table = MethodTable(
        [
            ("/a/{x}", {"DELETE"}),
            ("/a/{x}", {"GET"}),
            ("/a/b", {"POST"}),
            ("/c", {"PUT", "PROPFIND"}),
        ]
    )
    assert table.allowed("/a/1") == ["GET", "HEAD", "DELETE", "OPTIONS"]
    assert table.allowed("/a/b") == ["GET", "HEAD", "POST", "DELETE", "OPTIONS"]
    assert table.allowed("/c") == ["PUT", "OPTIONS", "PROPFIND"]
    assert table.allowed("/a") == [] and table.allowed("/a/1/2") == []
