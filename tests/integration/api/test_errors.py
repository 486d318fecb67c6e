"""plughost.api.errors: every error leaves as the contract's body
``{"success": false, "status", "error": {"message", "type", "details"}}``, one type per
exception class. The app's own routes raise most of them; what no route of ours raises on
demand (an unexpected exception, a status without a type of its own, a client that left) is
raised by a small app with the same handlers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.exceptions import HTTPException
from inproc import InProcessServer
from starlette.requests import ClientDisconnect
from support import unique_name

from plughost.api.errors import install_error_handlers
from plughost.api.methods import method_table
from plughost.errors import (
    ConflictError,
    PluginRuntimeError,
    ServiceUnavailableError,
    StorageUnavailableError,
)

from .conftest import Deployed, Tenant
from .helpers import NS, error, upload


# -- through the app's own routes ---------------------------------------------------------------
def test_request_validation_is_a_422_listing_each_field(app: InProcessServer) -> None:
    with app.client() as c:
        resp = c.post(f"/v1/namespaces/{NS}/plugins/uploads", json={"version": 7})
        err = error(resp, 422, "ValidationError")
        assert err["message"].startswith("request validation failed: ")
        fields = {tuple(e["loc"]) for e in err["details"]["errors"]}
        assert ("body", "name") in fields and ("body", "version") in fields
        for entry in err["details"]["errors"]:
            assert set(entry) == {"loc", "msg", "type"} and entry["msg"] and entry["type"]


def test_a_body_that_is_not_json_is_a_422(app: InProcessServer) -> None:
    with app.client() as c:
        resp = c.post(
            f"/v1/namespaces/{NS}/plugins/uploads",
            content=b"{nope",
            headers={"Content-Type": "application/json"},
        )
        assert "json" in error(resp, 422, "ValidationError")["message"].lower()


def test_our_exceptions_keep_their_status_type_and_details(
    app: InProcessServer, outsider: Tenant, limited: Tenant
) -> None:
    name = unique_name()
    with app.client() as c:
        upload(c, name, realtime=False)
        again = c.post(f"/v1/namespaces/{NS}/plugins/uploads", json={"name": name, "version": "1"})
        error(again, 409, "ConflictError")
        error(c.get(f"/v1/namespaces/{NS}/plugins/{name}_9_9_9"), 404, "NotFoundError")
        ctype = c.post(f"/inference/{NS}/x", content=b"{}", headers={"Content-Type": "text/csv"})
        assert error(ctype, 415, "UnsupportedMediaTypeError")["details"] == {
            "content_type": "text/csv"
        }
        big = c.post(
            f"/v1/namespaces/{NS}/plugins",
            content=b"x",
            headers={
                "Content-Type": "multipart/form-data; boundary=x",
                "Content-Length": str(10**9),
            },
        )
        assert error(big, 413, "PayloadTooLargeError")["details"]["max_bytes"] > 0
        error(
            c.post(
                f"/v1/namespaces/{NS}/plugins", content=b"x", headers={"Content-Type": "text/plain"}
            ),
            400,
            "BadRequestError",
        )
        not_live = c.post(f"/v1/namespaces/{NS}/plugins/{name}_1_0_0/realtime/test", json={})
        assert "deploy it first" in error(not_live, 503, "ServiceUnavailableError")["message"]
    with app.client(key=limited.key) as c:
        error(c.get("/metrics"), 403, "ForbiddenError")
    error(app.anonymous().get("/v1/plugins"), 401, "AuthenticationError")


def test_a_plugins_exception_is_a_500_plugin_error(
    app: InProcessServer, deployed: Deployed
) -> None:
    with app.client() as c:
        err = error(c.post(deployed.route_prefix, json={"inputs": {"boom": 1}}), 500, "PluginError")
        assert "ValueError" in err["message"] and "plugin says boom" in err["message"]


def test_an_unknown_path_is_a_404_naming_method_and_path(app: InProcessServer) -> None:
    with app.client() as c:
        err = error(c.get("/v2/whatever"), 404, "NotFoundError")
        assert err["message"] == "no route GET /v2/whatever" and err["details"] is None


# -- what no route raises on demand: the same handlers on a small app ---------------------------
def _app_raising() -> FastAPI:
    small = FastAPI()
    install_error_handlers(small)

    @small.get("/crash")
    def crash() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    @small.get("/teapot")
    def teapot() -> None:
        raise HTTPException(418, "short and stout", headers={"X-Kettle": "on"})

    @small.get("/gone")
    def gone() -> None:
        raise ClientDisconnect()

    @small.get("/hold")
    def hold() -> None:
        raise ServiceUnavailableError("restoring", retry_after_s=2.2)

    @small.get("/bucket")
    def bucket() -> None:
        raise StorageUnavailableError("bucket b at s3.example is unreachable")

    @small.get("/plugin")
    def plugin() -> None:
        raise PluginRuntimeError("plugin raised KeyError: 'x'", {"type": "KeyError"})

    @small.get("/conflict")
    def conflict() -> None:
        raise ConflictError("busy", {"status": "running"})

    small.state.methods = method_table(small.routes)
    return small


@pytest.fixture(scope="module")
def small() -> Iterator[httpx.Client]:
    transport = httpx.ASGITransport(app=_app_raising(), raise_app_exceptions=False)

    class Bridge(httpx.BaseTransport):  # the tests are synchronous, the transport is not
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            import asyncio

            async def go() -> httpx.Response:
                resp = await transport.handle_async_request(request)
                body = await resp.aread()
                return httpx.Response(resp.status_code, headers=resp.headers, content=body)

            return asyncio.run(go())

    with httpx.Client(base_url="http://small.test", transport=Bridge()) as c:
        yield c


def test_an_unexpected_exception_is_a_500_naming_only_its_type(small: httpx.Client) -> None:
    err = error(small.get("/crash"), 500, "InternalServerError")
    assert err["message"] == "internal error: RuntimeError"
    assert "hunter2" not in small.get("/crash").text


def test_an_http_status_without_a_type_of_its_own_keeps_its_headers(small: httpx.Client) -> None:
    resp = small.get("/teapot")
    assert error(resp, 418, "HTTPError")["message"] == "short and stout"
    assert resp.headers["x-kettle"] == "on"


def test_a_405_of_a_small_app_lists_its_methods(small: httpx.Client) -> None:
    resp = small.post("/crash")
    assert "method POST is not allowed" in error(resp, 405, "MethodNotAllowedError")["message"]
    assert resp.headers["allow"] == "GET, HEAD, OPTIONS"


def test_a_client_that_left_is_a_400(small: httpx.Client) -> None:
    assert error(small.get("/gone"), 400, "BadRequestError")["message"] == "client disconnected"


def test_a_wait_that_ran_out_says_when_to_come_back(small: httpx.Client) -> None:
    held = small.get("/hold")
    error(held, 503, "ServiceUnavailableError")
    assert held.headers["retry-after"] == "3"
    storage = small.get("/bucket")
    assert "s3.example" in error(storage, 503, "ServiceUnavailableError")["message"]
    assert storage.headers["retry-after"] == "5"


def test_details_travel_as_given(small: httpx.Client) -> None:
    assert error(small.get("/plugin"), 500, "PluginError")["details"] == {"type": "KeyError"}
    assert error(small.get("/conflict"), 409, "ConflictError")["details"] == {"status": "running"}
