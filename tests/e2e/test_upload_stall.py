"""An upload of a large archive never freezes the server: a deployed plugin keeps answering
while 400 modules go through intake, by multipart and by presigned upload plus confirm, and
the server's loop watchdog (on for every test server) reports no stall."""

from __future__ import annotations

import httpx
import pytest
from deploy_support import NS, deploy, infer, plugin_archive, upload, wait_for
from support import LiveServer, assert_no_loop_stalls, unique_name
from upload_load import Caller, many_modules_archive


@pytest.fixture(scope="session")
def db_kind(both_databases: str) -> str:
    """On PostgreSQL too: its sessions are where a blocking call on the loop costs most."""
    return both_databases


def _multipart(c: httpx.Client, name: str, archive: bytes) -> dict[str, object]:
    resp = c.post(
        f"/v1/namespaces/{NS}/plugins",
        data={"name": name, "version": "1.0.0"},
        files={"file": ("big.zip", archive, "application/zip")},
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _presigned(c: httpx.Client, name: str, archive: bytes) -> dict[str, object]:
    up = c.post(f"/v1/namespaces/{NS}/plugins/uploads", json={"name": name, "version": "1.0.0"})
    assert up.status_code == 200, up.text
    put = c.put(up.json()["presigned_url"], content=archive)
    assert put.status_code == 200, put.text
    confirm = c.post(
        f"/v1/namespaces/{NS}/plugins/uploads/{up.json()['upload_id']}/confirm",
        json={"etag": put.headers["etag"]},
    )
    assert confirm.status_code == 200, confirm.text
    return dict(confirm.json())


def test_large_uploads_leave_the_deployed_plugin_answering(server: LiveServer) -> None:
    with server.client() as c:
        name = unique_name("live")
        pid = upload(c, name, plugin_archive(name))
        deploy(c, pid)
        wait_for(c, pid, {"deployed"})
        route = f"/inference/{NS}/{name}"
        assert infer(c, route, {"text": "warm"}).status_code == 200
        caller = Caller(server, route)
        caller.start()
        try:
            form_name, url_name = unique_name("bigform"), unique_name("bigurl")
            by_form = _multipart(c, form_name, many_modules_archive(form_name))
            by_url = _presigned(c, url_name, many_modules_archive(url_name))
        finally:
            caller.stop()
    assert by_form["success"] and by_url["success"], (by_form, by_url)
    assert caller.failures == []
    assert caller.calls > 0
    assert_no_loop_stalls(server.logs())
