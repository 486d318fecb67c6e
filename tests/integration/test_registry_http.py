"""Registry behaviour over HTTP: validation failures, auth, conflicts, limits, error bodies."""

from __future__ import annotations

import io
import tarfile
import time
import zipfile

import httpx
from inproc import InProcessServer
from registry_support import NS, assert_error, listed_ids, multipart
from support import plugin_files, tar_gz_bytes, unique_name, zip_bytes


def assert_rejected(c: httpx.Client, name: str, archive: bytes, needle: str) -> list[str]:
    resp = multipart(c, name, archive)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["success"] is False and body["validation_status"] == "failed", body
    errors = body["validation_errors"]
    assert any(needle in e for e in errors), errors
    assert f"{name}_1_0_0" not in listed_ids(c), "a failed upload must register nothing"
    return list(errors)


def test_versions_are_normalised_and_duplicates_conflict(server: InProcessServer) -> None:
    name = unique_name()
    with server.client() as c:
        ok = multipart(c, name, zip_bytes(plugin_files(name)), version="v1")
        assert ok.json()["plugin_id"] == f"{name}_1_0_0", ok.text
        dup = multipart(c, name, zip_bytes(plugin_files(name)), version="1.0")
        assert_error(dup, 409, "ConflictError")
        dup2 = c.post(f"/v1/namespaces/{NS}/plugins/uploads", json={"name": name, "version": "1.0.0"})
        assert_error(dup2, 409, "ConflictError")
        assert_error(multipart(c, name, zip_bytes(plugin_files(name)), version="one"), 422, "ValidationError")
        assert_error(multipart(c, "9bad", zip_bytes(plugin_files("x"))), 422, "ValidationError")


def test_traversal_archive_is_rejected(server: InProcessServer) -> None:
    name = unique_name()
    files = plugin_files(name)
    files["../evil.py"] = "x = 1"
    with server.client() as c:
        assert_rejected(c, name, zip_bytes(files), "..")


def test_symlink_archive_is_rejected(server: InProcessServer) -> None:
    name = unique_name()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for fname, data in plugin_files(name).items():
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(fname)
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))
        link = tarfile.TarInfo("secret")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    with server.client() as c:
        assert_rejected(c, name, buf.getvalue(), "link")


def test_zip_bomb_is_rejected(server: InProcessServer) -> None:
    name = unique_name()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for fname, data in plugin_files(name).items():
            zf.writestr(fname, data)
        zf.writestr("weights.bin", b"\0" * (50 * 1024 * 1024))
    with server.client() as c:
        errors = assert_rejected(c, name, buf.getvalue(), "weights.bin")
        assert any("ratio" in e or "compress" in e for e in errors), errors


def test_too_many_files_is_rejected(server: InProcessServer) -> None:
    name = unique_name()
    files = plugin_files(name)
    files.update({f"data/f{i}.txt": "x" for i in range(1001)})
    with server.client() as c:
        assert_rejected(c, name, zip_bytes(files), "1000")


def test_missing_pipeline_is_rejected(server: InProcessServer) -> None:
    name = unique_name()
    files = plugin_files(name)
    del files["pipeline.py"]
    with server.client() as c:
        assert_rejected(c, name, tar_gz_bytes(files), "pipeline.py")


def test_security_scan_reports_file_line_col(server: InProcessServer) -> None:
    name = unique_name()
    files = plugin_files(name)
    files["processors/bad.py"] = "import os\nimport subprocess\nos.system('id')\n"
    with server.client() as c:
        errors = assert_rejected(c, name, zip_bytes(files), "processors/bad.py:2:")
        assert any(e.startswith("processors/bad.py:3:") for e in errors), errors


def test_manifest_exception_is_reported(server: InProcessServer) -> None:
    name = unique_name()
    files = plugin_files(name)
    files["manifest.py"] = "raise ValueError('manifest exploded')\n"
    with server.client() as c:
        assert_rejected(c, name, zip_bytes(files), "manifest exploded")


def test_not_an_archive_is_rejected(server: InProcessServer) -> None:
    name = unique_name()
    with server.client() as c:
        assert_rejected(c, name, b"this is not an archive at all", "archive")


def test_auth_failures(server: InProcessServer) -> None:
    no_key = server.anonymous().get(f"/v1/namespaces/{NS}/plugins")
    assert_error(no_key, 401, "AuthenticationError")
    bad = server.anonymous().get(f"/v1/namespaces/{NS}/plugins", headers={"Authorization": "Bearer nope"})
    assert_error(bad, 401, "AuthenticationError")
    assert_error(server.anonymous().get("/v1/plugins", headers={"Authorization": "Basic x"}), 401,
                 "AuthenticationError")
    assert server.anonymous().get("/healthz").status_code == 200


def test_other_organizations_namespace_answers_404_and_revoked_key_401(server: InProcessServer) -> None:
    org = unique_name("org")
    assert server.cli("orgs", "create", org).returncode == 0
    ns = server.cli("namespaces", "create", "theirs", "--org", org, "--json")
    assert ns.returncode == 0, ns.stderr
    import json

    their_ns = json.loads(ns.stdout)["namespace_id"]
    made = server.cli("keys", "create", "--org", org, "--json")
    their_key = json.loads(made.stdout)["key"]
    with server.client() as mine:
        assert_error(mine.get(f"/v1/namespaces/{their_ns}/plugins"), 404, "NotFoundError")
    with server.client(key=their_key) as theirs:
        assert theirs.get(f"/v1/namespaces/{their_ns}/plugins").status_code == 200
        assert_error(theirs.get(f"/v1/namespaces/{NS}/plugins"), 404, "NotFoundError")
    keys = json.loads(server.cli("keys", "list", "--json").stdout)
    assert all("key_hash" not in k and their_key not in json.dumps(k) for k in keys)
    polled = f"/v1/namespaces/{their_ns}/plugins/none_1_0_0/status"
    with server.client(key=their_key) as theirs:  # the polled path caches the key
        assert_error(theirs.get(polled), 404, "NotFoundError")
    key_id = json.loads(made.stdout)["key_id"]
    assert server.cli("keys", "revoke", key_id).returncode == 0
    with server.client(key=their_key) as theirs:
        assert_error(theirs.get(f"/v1/namespaces/{their_ns}/plugins"), 401, "AuthenticationError")
        # the cache keeps a revoked key working for at most its 2 s lifetime, busy or not
        deadline = time.monotonic() + 3.0
        while (resp := theirs.get(polled)).status_code != 401 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert_error(resp, 401, "AuthenticationError")


def test_key_limited_to_a_namespace(server: InProcessServer) -> None:
    import json

    ns_id = unique_name("ns")
    assert server.cli("namespaces", "create", "limited", "--id", ns_id).returncode == 0
    made = json.loads(server.cli("keys", "create", "-n", ns_id, "--json").stdout)
    with server.client(key=made["key"]) as c:
        assert c.get(f"/v1/namespaces/{ns_id}/plugins").status_code == 200
        assert_error(c.get(f"/v1/namespaces/{NS}/plugins"), 404, "NotFoundError")


def test_request_validation_errors_use_the_error_shape(server: InProcessServer) -> None:
    with server.client() as c:
        body = assert_error(c.post(f"/v1/namespaces/{NS}/plugins/uploads", json={"name": "abc"}),
                            422, "ValidationError")
        assert "version" in body["error"]["message"]
        long = c.post(f"/v1/namespaces/{NS}/plugins/uploads",
                      json={"name": "abcd", "version": "1.0.0", "description": "x" * 501})
        assert_error(long, 422, "ValidationError")
        exp = c.post(f"/v1/namespaces/{NS}/plugins/uploads",
                     json={"name": "abcd", "version": "1.0.0", "presigned_url_expiration": 10})
        assert_error(exp, 422, "ValidationError")
        assert_error(c.get(f"/v1/namespaces/{NS}/plugins/nope_1_0_0"), 404, "NotFoundError")
        assert_error(c.post(f"/v1/namespaces/{NS}/plugins", content=b"x",
                            headers={"Content-Type": "text/plain"}), 400, "BadRequestError")


def test_presigned_url_tampered_or_expired_is_403_and_etag_checked(server: InProcessServer) -> None:
    name = unique_name()
    archive = zip_bytes(plugin_files(name))
    with server.client() as c:
        up = c.post(f"/v1/namespaces/{NS}/plugins/uploads",
                    json={"name": name, "version": "1.0.0", "presigned_url_expiration": 60}).json()
        url = up["presigned_url"]
        tampered = url.replace("signature=", "signature=0")
        assert_error(server.anonymous().put(tampered, content=archive), 403, "ForbiddenError")
        expired = url.replace("expires=", "expires=1").split("&signature")[0] + "&signature=abc"
        assert_error(server.anonymous().put(expired, content=archive), 403, "ForbiddenError")
        # confirm before any PUT: nothing to confirm
        assert_error(c.post(f"/v1/namespaces/{NS}/plugins/uploads/{up['upload_id']}/confirm"), 404, "NotFoundError")
        put = server.anonymous().put(url, content=archive)
        assert put.status_code == 200
        bad = c.post(f"/v1/namespaces/{NS}/plugins/uploads/{up['upload_id']}/confirm",
                     json={"etag": '"0123456789abcdef0123456789abcdef"'})
        assert_error(bad, 422, "ValidationError")
        bad_size = c.post(f"/v1/namespaces/{NS}/plugins/uploads/{up['upload_id']}/confirm",
                          json={"file_size_bytes": len(archive) + 1})
        assert_error(bad_size, 422, "ValidationError")
        ok = c.post(f"/v1/namespaces/{NS}/plugins/uploads/{up['upload_id']}/confirm",
                    json={"etag": put.headers["ETag"], "file_size_bytes": len(archive)})
        assert ok.json()["success"] is True, ok.text
        again = c.post(f"/v1/namespaces/{NS}/plugins/uploads/{up['upload_id']}/confirm")
        assert_error(again, 409, "ConflictError")
        # the GET download URL is signed too
        detail = c.get(f"/v1/namespaces/{NS}/plugins/{name}_1_0_0", params={"return_presigned_urls": "true"}).json()
        dl = detail["presigned_download_url"]
        assert server.anonymous().get(dl).content == archive
        assert_error(server.anonymous().get(dl.replace("signature=", "signature=f")), 403, "ForbiddenError")


def test_failed_confirm_can_be_retried_with_a_fixed_archive(server: InProcessServer) -> None:
    name = unique_name()
    broken = plugin_files(name)
    del broken["manifest.py"]
    with server.client() as c:
        up = c.post(f"/v1/namespaces/{NS}/plugins/uploads", json={"name": name, "version": "1.0.0"}).json()
        server.anonymous().put(up["presigned_url"], content=zip_bytes(broken))
        first = c.post(f"/v1/namespaces/{NS}/plugins/uploads/{up['upload_id']}/confirm").json()
        assert first["validation_status"] == "failed"
        server.anonymous().put(up["presigned_url"], content=zip_bytes(plugin_files(name)))
        second = c.post(f"/v1/namespaces/{NS}/plugins/uploads/{up['upload_id']}/confirm").json()
        assert second["validation_status"] == "passed", second


def test_status_polls_answer_truthfully_after_delete_disable_and_reupload(server: InProcessServer) -> None:
    """Status is answered from memory after the first poll; deleting or disabling a plugin
    must still show at once, and errors keep the contract's shape."""
    name = unique_name("stat")
    with server.client() as c:
        resp = multipart(c, name, zip_bytes(plugin_files(name)))
        pid = resp.json()["plugin_id"]
        url = f"/v1/namespaces/{NS}/plugins/{pid}/status"
        for _ in range(3):  # the first poll loads, the next ones hit the cache
            body = c.get(url).json()
            assert body["status"] == "not_deployed" and body["deployed"] is False
            assert body["plugin_id"] == pid and body["name"] == name
        assert_error(server.anonymous().get(f"{url}"), 401, "AuthenticationError")
        assert_error(c.get(f"/v1/namespaces/ns_nowhere/plugins/{pid}/status"), 404, "NotFoundError")
        assert_error(c.get(f"/v1/namespaces/{NS}/plugins/nope_1_0_0/status"), 404, "NotFoundError")
        assert c.delete(f"/v1/namespaces/{NS}/plugins/{pid}").status_code == 200
        assert_error(c.get(url), 404, "NotFoundError")
        again = multipart(c, name, zip_bytes(plugin_files(name)))
        assert again.json()["plugin_id"] == pid
        assert c.get(url).json()["status"] == "not_deployed"

        org_name = unique_name("stato")
        up = c.post("/v1/plugins/uploads", json={"name": org_name, "version": "1.0.0"}).json()
        server.anonymous().put(up["presigned_url"], content=zip_bytes(plugin_files(org_name)))
        opid = c.post(f"/v1/plugins/uploads/{up['upload_id']}/confirm").json()["plugin_id"]
        org_url = f"/v1/namespaces/{NS}/plugins/{opid}/status"
        assert_error(c.get(org_url), 404, "NotFoundError")
        assert c.post(f"/v1/namespaces/{NS}/plugins/org/{opid}/enable", json={"deploy": False}).status_code == 200
        assert c.get(org_url).json()["status"] == "not_deployed"
        assert c.get(org_url).json()["plugin_id"] == opid
        assert c.post(f"/v1/namespaces/{NS}/plugins/org/{opid}/disable").status_code == 200
        assert_error(c.get(org_url), 404, "NotFoundError")
