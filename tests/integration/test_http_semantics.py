"""Issue 18 over HTTP, one test per fix: bad requests on the request path are 4xx about the
request (never 5xx, never PluginError), 405 answers carry the whole `Allow`, HEAD and
OPTIONS behave as HTTP says, form and JSON bodies are read as the OpenAPI document says,
and the document itself describes the fast path, auth, errors and limits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from inproc import InProcessServer
from support import EXAMPLES, dir_files, plugin_files, unique_name, zip_bytes

NS = "ns_default"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcessServer, str]]:
    """The app in process on SQLite with the hash embedder deployed: (server, its route)."""
    srv = InProcessServer(home=tmp_path_factory.mktemp("semantics")).start()
    try:
        archive = zip_bytes(dir_files(EXAMPLES / "hash_embedder"))  # type: ignore[arg-type]
        with srv.client() as c:
            up = c.post(f"/v1/namespaces/{NS}/plugins", data={"name": "hash_embedder",
                        "version": "1.0.0"}, files={"file": ("h.zip", archive, "application/zip")})
            assert up.json()["validation_status"] == "passed", up.text
            assert c.post(f"/v1/namespaces/{NS}/plugins/hash_embedder_1_0_0/deploy").is_success
            deadline = time.monotonic() + 120
            while c.get(f"/v1/namespaces/{NS}/plugins/hash_embedder_1_0_0/status").json()[
                    "status"] != "deployed":
                assert time.monotonic() < deadline, "the hash embedder did not deploy"
                time.sleep(0.3)
        yield srv, f"/inference/{NS}/custom_plugin_hash_embedder_1_0_0"
    finally:
        srv.stop()


def error(resp: httpx.Response, status: int, error_type: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["success"] is False and body["status"] == status, body
    assert body["error"]["type"] == error_type, body
    return str(body["error"]["message"])


# -- the request path: 4xx about the request ---------------------------------------------------
def test_empty_inference_body_is_a_400_about_the_request(live: tuple[InProcessServer, str]) -> None:
    srv, route = live
    with srv.client() as c:
        for path in (route, f"/inference/{NS}/hash_embedder"):
            message = error(c.post(path, content=b""), 400, "BadRequestError")
            assert "request body is empty" in message
        body = c.post("/v1/inference", content=b"", headers={"X-Namespace": NS})
        assert "request body is empty" in error(body, 400, "BadRequestError")


def test_inference_body_that_is_not_an_object_is_a_400(live: tuple[InProcessServer, str]) -> None:
    srv, route = live
    with srv.client() as c:
        assert "JSON array" in error(c.post(route, content=b"[1]"), 400, "BadRequestError")
        assert "not valid JSON" in error(c.post(route, content=b"{"), 400, "BadRequestError")
        wrong = c.post(route, json={"inputs": "text"})
        assert "inputs must be a JSON object" in error(wrong, 400, "BadRequestError")


def test_inference_body_of_another_content_type_is_a_415(live: tuple[InProcessServer, str]) -> None:
    srv, route = live
    with srv.client() as c:
        for path in (route, "/v1/inference"):
            resp = c.post(path, content=b'{"inputs": {"text": "a"}}',
                          headers={"Content-Type": "text/plain", "X-Namespace": NS})
            assert "text/plain" in error(resp, 415, "UnsupportedMediaTypeError")
        # JSON, a +json type and curl's -d default still work
        for ctype in ("application/json; charset=utf-8", "application/vnd.x+json",
                      "application/x-www-form-urlencoded"):
            ok = c.post(route, content=b'{"inputs": {"text": "a"}}', headers={"Content-Type": ctype})
            assert ok.status_code == 200 and len(ok.json()["embedding"]) == 16, (ctype, ok.text)


def test_inference_body_past_the_limit_is_a_413(live: tuple[InProcessServer, str]) -> None:
    srv, route = live
    from plughost.dataplane.body import MAX_BODY_BYTES

    def chunks() -> Iterator[bytes]:  # streamed: no Content-Length to refuse up front
        block = b" " * (1 << 20)
        for _ in range(MAX_BODY_BYTES // len(block) + 1):
            yield block

    with srv.client() as c:
        error(c.post(route, content=chunks()), 413, "PayloadTooLargeError")
        by_name = c.post("/v1/inference", content=chunks(), headers={"X-Namespace": NS})
        error(by_name, 413, "PayloadTooLargeError")


def test_only_the_plugins_own_exception_is_a_plugin_error(live: tuple[InProcessServer, str]) -> None:
    srv, route = live
    with srv.client() as c:
        raised = c.post(route, json={"inputs": {"text": 3}})
        assert "TypeError" in error(raised, 500, "PluginError")
        assert c.post(route, json={"inputs": {"text": "ok"}}).status_code == 200


# -- methods ------------------------------------------------------------------------------------
def test_405_carries_every_method_of_the_path(live: tuple[InProcessServer, str]) -> None:
    srv, route = live
    with srv.client() as c:
        resp = c.put(f"/v1/namespaces/{NS}/plugins/hash_embedder_1_0_0")
        error(resp, 405, "MethodNotAllowedError")
        assert resp.headers["allow"] == "GET, HEAD, DELETE, OPTIONS"
        get_infer = c.get(route)
        error(get_infer, 405, "MethodNotAllowedError")
        assert get_infer.headers["allow"] == "POST, OPTIONS"


def test_fixed_paths_are_not_taken_for_ids(live: tuple[InProcessServer, str]) -> None:
    srv, _ = live
    with srv.client() as c:
        for path in (f"/v1/namespaces/{NS}/plugins/uploads", "/v1/plugins/uploads",
                     f"/v1/namespaces/{NS}/batches/uploads"):
            resp = c.get(path)
            error(resp, 405, "MethodNotAllowedError")
            assert resp.headers["allow"] == "POST, OPTIONS", path
        assert "no route" in error(c.get(f"/v1/namespaces/{NS}/plugins/not-an-id"), 404,
                                   "NotFoundError")


def test_options_answers_allow_and_head_follows_get(live: tuple[InProcessServer, str]) -> None:
    srv, route = live
    with srv.anonymous() as anonymous, srv.client() as c:
        opts = anonymous.options(f"/v1/namespaces/{NS}/plugins")
        assert opts.status_code == 204 and opts.content == b""
        assert opts.headers["allow"] == "GET, HEAD, POST, OPTIONS"
        assert anonymous.options(route).headers["allow"] == "POST, OPTIONS"
        error(anonymous.options("/nowhere"), 404, "NotFoundError")
        head = c.head(f"/v1/namespaces/{NS}/plugins/hash_embedder_1_0_0/status")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"] == "application/json"
        head_infer = c.head(route)
        assert head_infer.status_code == 405 and head_infer.headers["allow"] == "POST, OPTIONS"


# -- bodies read as documented ------------------------------------------------------------------
def test_multipart_fields_the_form_does_not_take_are_refused(live: tuple[InProcessServer, str]) -> None:
    srv, _ = live
    name = unique_name()
    archive = zip_bytes(plugin_files(name))
    with srv.client() as c:
        extra = c.post(f"/v1/namespaces/{NS}/plugins", data={"name": name, "version": "1.0.0",
                       "colour": "red"}, files={"file": ("p.zip", archive, "application/zip")})
        assert "colour" in error(extra, 422, "ValidationError")
        twice = c.post(f"/v1/namespaces/{NS}/plugins",
                       data={"name": name, "version": ["1.0.0", "2.0.0"]},
                       files={"file": ("p.zip", archive, "application/zip")})
        assert "more than once" in error(twice, 422, "ValidationError")
        batch = f"/v1/namespaces/{NS}/plugins/hash_embedder_1_0_0/batches"
        rows = ("rows.jsonl", b'{"text": "a"}\n', "application/x-ndjson")
        empty_mode = c.post(batch, data={"on_error": ""}, files={"file": rows})
        assert "on_error" in error(empty_mode, 422, "ValidationError")
        unknown = c.post(batch, data={"mode": "x"}, files={"file": rows})
        assert "mode" in error(unknown, 422, "ValidationError")


def test_json_integers_and_patterns_are_as_documented(live: tuple[InProcessServer, str]) -> None:
    srv, _ = live
    uploads = f"/v1/namespaces/{NS}/plugins/uploads"
    with srv.client() as c:
        as_float = c.post(uploads, json={"name": unique_name(), "version": "1.0.0",
                                         "presigned_url_expiration": 600.0})
        assert as_float.status_code == 200, as_float.text
        for bad in ({"presigned_url_expiration": False}, {"file_size_bytes": "10"},
                    {"name": "abc\n"}, {"version": "1.0\n"}, {"version": "\u0663"}):
            body = {"name": unique_name(), "version": "1.0.0", **bad}
            error(c.post(uploads, json=body), 422, "ValidationError")


def test_presigned_put_of_no_bytes_is_a_400(live: tuple[InProcessServer, str]) -> None:
    srv, _ = live
    with srv.client() as c:
        up = c.post(f"/v1/namespaces/{NS}/plugins/uploads",
                    json={"name": unique_name(), "version": "1.0.0"}).json()
        assert "empty" in error(srv.anonymous().put(up["presigned_url"], content=b""), 400, "BadRequestError")
        assert srv.anonymous().put(up["presigned_url"], content=b"PK").status_code == 200


def test_logs_since_takes_ascii_ages_and_iso_times(live: tuple[InProcessServer, str]) -> None:
    srv, _ = live
    logs = f"/v1/namespaces/{NS}/plugins/hash_embedder_1_0_0/logs"
    with srv.client() as c:
        for since in ("10m", "2026-01-01T00:00:00z", "2026-01-01T00:00:00+00:00"):
            assert c.get(logs, params={"since": since}).status_code == 200, since
        for since in ("\u0663m", " 10m", "yesterday"):
            error(c.get(logs, params={"since": since}), 400, "BadRequestError")


# -- the document -------------------------------------------------------------------------------
def test_openapi_document_describes_fast_path_auth_errors_and_limits(
    live: tuple[InProcessServer, str],
) -> None:
    srv, _ = live
    doc: dict[str, Any] = srv.anonymous().get("/openapi.json").json()
    assert srv.anonymous().get("/docs").status_code == 200
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert doc["security"] == [{"bearerAuth": []}]
    paths = doc["paths"]
    infer = paths["/inference/{namespace_id}/{route}"]["post"]
    assert set(infer["responses"]) >= {"200", "400", "401", "404", "413", "415", "500", "503"}
    schema = infer["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"inputs", "parameters"}
    assert "/v1/namespaces/{namespace_id}/plugins/{plugin_id}/status" in paths
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in paths.items():
        for method, op in operations.items():
            errors = {k: v for k, v in op["responses"].items() if k[0] in "45"}
            assert errors, (method, path)
            for answer in errors.values():
                assert answer["content"]["application/json"]["schema"] == error_ref
            assert not any(p["name"].lower() == "authorization" for p in op.get("parameters", []))
    store = paths["/v1/_store/uploads/{upload_id}"]["put"]
    assert store["security"] == [] and "presigned URL" in store["description"]
    assert store["responses"]["200"]["headers"]["ETag"]
    form = paths["/v1/namespaces/{namespace_id}/plugins"]["post"]["requestBody"]["content"]
    fields = form["multipart/form-data"]["schema"]["properties"]
    assert fields["name"]["pattern"] == "^[a-zA-Z][a-zA-Z0-9_]{2,63}$"
    assert fields["version"]["pattern"].startswith("^[vV]?")
    assert fields["file"]["maxLength"] == 524_288_000
    assert "/ui" not in paths and "/ui/static/{name}" not in paths
    assert srv.anonymous().get("/ui").status_code == 200


def test_openapi_document_describes_streams_deadlines_and_504(
    live: tuple[InProcessServer, str],
) -> None:
    srv, _ = live
    paths = srv.anonymous().get("/openapi.json").json()["paths"]
    for path in ("/inference/{namespace_id}/{route}", "/v1/inference"):
        op = paths[path]["post"]
        ok = op["responses"]["200"]
        assert set(ok["content"]) == {"application/json", "application/x-ndjson", "text/event-stream"}
        assert "event: end" in ok["description"]
        assert op["responses"]["504"]["description"].startswith("GatewayTimeoutError")
        header = [p for p in op["parameters"] if p["name"].lower() == "x-request-timeout"]
        assert len(header) == 1 and header[0]["in"] == "header"
        assert "only lower" in header[0]["description"]
