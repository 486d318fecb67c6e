"""plughost.api.routes_batches: submit (multipart, or JSON naming a presigned input), read,
list and cancel, and the presigned input upload; the 4xx of each. Jobs are queued here, not
waited for: running them is the e2e tier's (tests/e2e/test_batches.py). The app's batch
input limit is 100 kB."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from inproc import InProcessServer
from support import unique_name

from .conftest import LIMITS, Tenant
from .helpers import NS, error, upload

ROWS = ("rows.jsonl", b'{"text": "a"}\n{"text": "b"}\n', "application/x-ndjson")


@pytest.fixture(scope="module")
def plugin(app: InProcessServer) -> str:
    with app.client() as c:
        return upload(c, unique_name(), realtime=False)


def batches(pid: str) -> str:
    return f"/v1/namespaces/{NS}/plugins/{pid}/batches"


def submit(c: httpx.Client, pid: str, **data: Any) -> httpx.Response:
    return c.post(batches(pid), data=data, files={"file": ROWS})


def test_a_submitted_job_is_read_listed_and_cancelled(app: InProcessServer, plugin: str) -> None:
    with app.client() as c:
        resp = submit(c, plugin, parameters='{"k": 1}', on_error="skip")
        body = resp.json()
        assert resp.status_code == 202 and body["success"] is True, body
        batch_id = body["batch_id"]
        assert batch_id.startswith("bat_") and body["plugin_id"] == plugin
        assert body["status"] == "queued" and body["input_format"] == "jsonl"
        assert body["status_endpoint"] == f"{batches(plugin)}/{batch_id}"
        doc = c.get(body["status_endpoint"]).json()
        assert doc["batch_id"] == batch_id and doc["namespace_id"] == NS
        assert doc["parameters"] == {"k": 1} and doc["on_error"] == "skip"
        assert doc["input_name"] == "rows.jsonl"
        assert c.get(f"/v1/namespaces/{NS}/batches/{batch_id}").json()["batch_id"] == batch_id
        for listing in (batches(plugin), f"/v1/namespaces/{NS}/batches"):
            listed = c.get(listing).json()
            assert batch_id in {b["batch_id"] for b in listed["batches"]}, listed
        first = c.delete(f"{batches(plugin)}/{batch_id}")
        if first.status_code == 200:  # else it ended before the cancel came
            assert first.json() == {"success": True, "batch_id": batch_id, "status": "cancelled"}
        again = c.delete(f"/v1/namespaces/{NS}/batches/{batch_id}")
        assert "already" in error(again, 409, "ConflictError")["message"]
        assert again.json()["error"]["details"]["status"] in ("cancelled", "completed", "failed")


@pytest.mark.parametrize(
    ("form", "needle"),
    [
        ({"parameters": "{not json"}, "not JSON"),
        ({"parameters": "[1, 2]"}, "JSON object"),
        ({"on_error": "retry"}, "on_error"),
        ({"on_error": ""}, "on_error"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_form_is_a_422_naming_the_field(
    app: InProcessServer, plugin: str, form: dict[str, str], needle: str
) -> None:
    with app.client() as c:
        assert needle in error(submit(c, plugin, **form), 422, "ValidationError")["message"]


def test_bodies_that_are_not_a_job_are_refused(app: InProcessServer, plugin: str) -> None:
    with app.client() as c:
        no_file = c.post(batches(plugin), data={"on_error": "fail"}, files={"x": (None, "1")})
        error(no_file, 422, "ValidationError")
        text = c.post(batches(plugin), content=b"a,b", headers={"Content-Type": "text/csv"})
        assert "multipart/form-data" in error(text, 400, "BadRequestError")["message"]
        error(c.post(batches(plugin), json={"parameters": {}}), 422, "ValidationError")
        error(
            c.post(batches(plugin), json={"input_url": "file:///etc/passwd"}),
            422,
            "ValidationError",
        )
        for url in (
            "store://batch-inputs/bin_000000000000000000000000/x.jsonl",
            "store://batch-inputs/../../secrets/x",
            "store://batch-inputs/bin_1/../x",
        ):
            error(c.post(batches(plugin), json={"input_url": url}), 404, "NotFoundError")
        error(
            c.post(batches(plugin), content=b"{", headers={"Content-Type": "application/json"}),
            422,
            "ValidationError",
        )


def test_an_input_past_the_limit_is_a_413(app: InProcessServer, plugin: str) -> None:
    limit = LIMITS["batch_max_input_bytes"]
    big = b'{"text": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}\n'
    rows = big * (limit // len(big) + 1)
    with app.client() as c:
        resp = c.post(batches(plugin), files={"file": ("rows.jsonl", rows, "application/x-ndjson")})
        error(resp, 413, "PayloadTooLargeError")
        up = c.post(f"/v1/namespaces/{NS}/batches/uploads", json={"file_name": "rows.jsonl"}).json()
    assert up["max_bytes"] == limit
    error(app.anonymous().put(up["presigned_url"], content=rows), 413, "PayloadTooLargeError")


def test_a_presigned_input_is_submitted_by_its_url(app: InProcessServer, plugin: str) -> None:
    with app.client() as c:
        up = c.post(f"/v1/namespaces/{NS}/batches/uploads", json={"file_name": "in.jsonl"}).json()
        assert up["method"] == "PUT" and up["input_url"].startswith("store://batch-inputs/bin_")
        assert up["expires_in_seconds"] == 3600
        url = up["presigned_url"]
        error(
            app.anonymous().put(url.replace("signature=", "signature=0"), content=ROWS[1]),
            403,
            "ForbiddenError",
        )
        error(app.anonymous().put(url, content=b""), 400, "BadRequestError")
        put = app.anonymous().put(url, content=ROWS[1])
        assert put.status_code == 200 and put.headers["etag"].startswith('"')
        resp = c.post(batches(plugin), json={"input_url": up["input_url"], "on_error": "fail"})
        assert resp.status_code == 202 and resp.json()["input_format"] == "jsonl", resp.text
        for expiration in (59, 86401):
            bad = c.post(
                f"/v1/namespaces/{NS}/batches/uploads",
                json={"presigned_url_expiration": expiration},
            )
            error(bad, 422, "ValidationError")


def test_unknown_plugins_batches_and_ids_are_404(app: InProcessServer, plugin: str) -> None:
    with app.client() as c:
        error(submit(c, "nope_1_0_0"), 404, "NotFoundError")
        error(c.get(f"{batches(plugin)}/bat_0"), 404, "NotFoundError")
        error(c.delete(f"/v1/namespaces/{NS}/batches/bat_0"), 404, "NotFoundError")
        for bad_id in ("bat_XYZ", "..%2Fbat_0", "0"):
            assert error(c.get(f"/v1/namespaces/{NS}/batches/{bad_id}"), 404, "NotFoundError")[
                "message"
            ].startswith("no route")


def test_another_organizations_key_reaches_no_batch(
    app: InProcessServer, plugin: str, outsider: Tenant
) -> None:
    with app.client() as c:
        batch_id = submit(c, plugin).json()["batch_id"]
    with app.client(key=outsider.key) as theirs:
        error(submit(theirs, plugin), 404, "NotFoundError")
        error(theirs.get(f"{batches(plugin)}/{batch_id}"), 404, "NotFoundError")
        error(theirs.delete(f"/v1/namespaces/{NS}/batches/{batch_id}"), 404, "NotFoundError")
        error(theirs.get(f"/v1/namespaces/{NS}/batches"), 404, "NotFoundError")
        own = theirs.get(f"/v1/namespaces/{outsider.namespace_id}/batches").json()
        assert batch_id not in {b["batch_id"] for b in own["batches"]}
