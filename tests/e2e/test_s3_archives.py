"""Archives on S3 (issue 16): a live server whose store is moto's standalone S3 server.

The upload, confirm, download and delete tests of the registry and the SDK conformance tests
run here again, imported, against a server on `s3://bucket/archives` (SQLite only: the store
does not depend on the database), on both upload flows. The tests below add what only S3
has: S3's own presigned URLs, the staging object, the cache, the errors of a missing bucket,
refused credentials and an unreachable endpoint, at start and on use.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# the registry tests run here again: they live in the in-process tier's folder
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from s3support import CREDENTIALS, MotoServer, Relay, object_keys, s3_client, s3_env
from support import EXAMPLES, LiveServer, dir_files, plugin_files, unique_name, zip_bytes
from test_registry_http import (  # noqa: F401 - run again on the S3 store
    assert_error,
    multipart,
    test_failed_confirm_can_be_retried_with_a_fixed_archive,
    test_not_an_archive_is_rejected,
    test_status_polls_answer_truthfully_after_delete_disable_and_reupload,
    test_versions_are_normalised_and_duplicates_conflict,
)
from test_sdk_conformance import (  # noqa: F401 - run again on the S3 store
    ns_api,
    org_api,
    test_every_response_has_the_sdk_models_required_fields,
    test_multipart_upload_tar_gz_metadata_style,
    test_org_level_twins_and_namespace_membership,
    test_presigned_upload_confirm_get_list_delete,
)

NS = "ns_default"
BUCKET = "plughost-archives"
LIMIT = 1_000_000  # PLUGHOST_MAX_ARCHIVE_BYTES of the module's server


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    srv = MotoServer(tmp_path_factory.mktemp("moto")).start()
    try:
        s3_client(srv.url).create_bucket(Bucket=BUCKET)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def s3(moto: MotoServer) -> Any:
    return s3_client(moto.url)


@pytest.fixture(scope="module")
def server(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The module's server (overrides conftest's): archives on s3://plughost-archives/archives."""
    env = {**s3_env(moto.url, BUCKET), "PLUGHOST_MAX_ARCHIVE_BYTES": str(LIMIT)}
    srv = LiveServer(home=tmp_path_factory.mktemp("home-s3"), extra_env=env).start()
    try:
        yield srv
    finally:
        srv.stop()


def _presign(c: httpx.Client, name: str) -> dict[str, Any]:
    up = c.post(f"/v1/namespaces/{NS}/plugins/uploads", json={"name": name, "version": "1.0.0"})
    assert up.status_code == 200, up.text
    return dict(up.json())


def _confirm(c: httpx.Client, upload_id: str, **body: Any) -> httpx.Response:
    return c.post(f"/v1/namespaces/{NS}/plugins/uploads/{upload_id}/confirm", json=body)


def test_presigned_flow_goes_straight_to_s3_and_sealed_on_confirm(
    server: LiveServer, moto: MotoServer, s3: Any
) -> None:
    name = unique_name("s3p")
    archive = zip_bytes(plugin_files(name))
    with server.client() as c:
        up = _presign(c, name)
        assert up["presigned_url"].startswith(f"{moto.url}/{BUCKET}/archives/incoming/")
        assert "X-Amz-Signature=" in up["presigned_url"]
        put = httpx.put(
            up["presigned_url"], content=archive, headers={"Content-Type": "application/zip"}
        )
        assert put.status_code == 200, put.text
        ok = _confirm(c, up["upload_id"], etag=put.headers["ETag"], file_size_bytes=len(archive))
        body = ok.json()
        assert body["success"] is True, body
        key = f"archives/{up['s3_key']}"
        assert body["s3_archive_url"] == f"s3://{BUCKET}/{key}"
        assert key in object_keys(s3, BUCKET)
        assert not [k for k in object_keys(s3, BUCKET) if k.startswith("archives/incoming/")]
        # the upload URL is still valid, but a PUT to it cannot change the registered archive
        assert httpx.put(up["presigned_url"], content=b"other bytes").status_code == 200
        pid = body["plugin_id"]
        detail = c.get(
            f"/v1/namespaces/{NS}/plugins/{pid}", params={"return_presigned_urls": "true"}
        ).json()
        url = detail["presigned_download_url"]
        assert url.startswith(f"{moto.url}/{BUCKET}/{key}?"), url
        assert httpx.get(url).content == archive
        assert c.delete(f"/v1/namespaces/{NS}/plugins/{pid}").status_code == 200
        assert key not in object_keys(s3, BUCKET)
        assert not (server.home / "archive-cache" / up["s3_key"]).exists()


def test_multipart_flow_stores_on_s3_and_deploy_fetches_it(server: LiveServer, s3: Any) -> None:
    name = unique_name("s3m")
    archive = zip_bytes(dir_files(EXAMPLES / "hash_embedder"))
    with server.client() as c:
        res = multipart(c, name, archive)
        body = res.json()
        assert body["success"] is True, body
        key = body["s3_archive_url"].removeprefix(f"s3://{BUCKET}/")
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == archive
        # a server on another machine has no copy: deploying fetches it from the bucket
        shutil.rmtree(server.home / "archive-cache")
        pid = body["plugin_id"]
        assert c.post(f"/v1/namespaces/{NS}/plugins/{pid}/deploy").status_code == 200
        for _ in range(300):
            status = c.get(f"/v1/namespaces/{NS}/plugins/{pid}/status").json()
            if status["status"] in ("deployed", "failed"):
                break
            time.sleep(0.1)
        assert status["status"] == "deployed", status
        out = c.post(status["route_prefix"], json={"inputs": {"text": "hi"}, "parameters": {}})
        assert out.status_code == 200 and len(out.json()["embedding"]) == 16, out.text
        assert c.delete(f"/v1/namespaces/{NS}/plugins/{pid}").status_code == 200
        assert key not in object_keys(s3, BUCKET)


def test_confirm_checks_etag_size_and_limit_of_the_s3_object(server: LiveServer, s3: Any) -> None:
    name = unique_name("s3e")
    archive = zip_bytes(plugin_files(name))
    with server.client() as c:
        up = _presign(c, name)
        assert_error(_confirm(c, up["upload_id"]), 404, "NotFoundError")  # nothing PUT yet
        put = httpx.put(up["presigned_url"], content=archive)
        bad = _confirm(c, up["upload_id"], etag='"0123456789abcdef0123456789abcdef"')
        assert_error(bad, 422, "ValidationError")
        assert_error(
            _confirm(c, up["upload_id"], file_size_bytes=len(archive) + 1), 422, "ValidationError"
        )
        ok = _confirm(c, up["upload_id"], etag=put.headers["ETag"], file_size_bytes=len(archive))
        assert ok.json()["success"] is True, ok.text

        big_name = unique_name("s3big")
        big = _presign(c, big_name)
        assert httpx.put(big["presigned_url"], content=b"\1" * (LIMIT + 1)).status_code == 200
        assert_error(_confirm(c, big["upload_id"]), 413, "PayloadTooLargeError")
        assert not [k for k in object_keys(s3, BUCKET) if big_name in k]
        resp = multipart(c, big_name, b"\1" * (LIMIT + 1))
        assert_error(resp, 413, "PayloadTooLargeError")
        assert not [k for k in object_keys(s3, BUCKET) if big_name in k]


# -- errors at start and on use ---------------------------------------------------------------
def _failed_start(home: Path, env: dict[str, str]) -> str:
    srv = LiveServer(home=home, extra_env=env)
    with pytest.raises(RuntimeError, match="exited early") as info:
        srv.start(timeout=60)
    return str(info.value)


def test_missing_bucket_stops_the_start_naming_bucket_and_endpoint(
    tmp_path: Path, moto: MotoServer
) -> None:
    logs = _failed_start(tmp_path, s3_env(moto.url, "no-such-bucket"))
    assert "the bucket of s3://no-such-bucket/archives/" in logs and "does not exist" in logs
    assert moto.url in logs


def _opened(tmp_path: Path, endpoint: str, **env: str) -> str:
    """The start's store check, in this process (a server start costs seconds of CPU)."""
    from plughost.config import Settings
    from plughost.errors import StorageUnavailableError
    from plughost.storage.factory import open_archive_store

    settings = Settings(
        home=tmp_path, storage_url=f"s3://{BUCKET}/archives", s3_endpoint_url=endpoint
    )
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        with pytest.raises(StorageUnavailableError) as info:
            open_archive_store(settings)
    assert info.value.status_code == 503
    return info.value.message


def test_refused_credentials_stop_the_start(tmp_path: Path) -> None:
    strict = MotoServer(tmp_path / "moto", auth=True).start()  # knows no access key at all
    try:
        message = _opened(tmp_path, strict.url, **CREDENTIALS)
    finally:
        strict.stop()
    assert f"s3://{BUCKET}/archives/ at {strict.url} refused the credentials" in message


def test_unreachable_endpoint_stops_the_start(tmp_path: Path) -> None:
    from support import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"
    message = _opened(tmp_path, endpoint, **CREDENTIALS)
    assert f"s3://{BUCKET}/archives/ at {endpoint} cannot be used" in message, message


def test_store_outage_on_use_is_a_503_and_loses_no_upload(
    tmp_path: Path, moto: MotoServer, s3: Any
) -> None:
    relay = Relay(moto.port).start()
    srv = LiveServer(home=tmp_path, extra_env=s3_env(relay.url, BUCKET, "outage")).start()
    name, name2 = unique_name("s3o"), unique_name("s3o")
    archive = zip_bytes(plugin_files(name))
    try:
        with srv.client() as c:
            up = _presign(c, name)
            assert httpx.put(up["presigned_url"], content=archive).status_code == 200
            relay.cut()
            down = _confirm(c, up["upload_id"])
            body = assert_error(down, 503, "ServiceUnavailableError")
            assert f"s3://{BUCKET}/outage/ at {relay.url}" in body["error"]["message"]
            assert down.headers["Retry-After"] == "5"
            mp = multipart(c, name2, zip_bytes(plugin_files(name2)))
            assert_error(mp, 503, "ServiceUnavailableError")
            listed = {p["name"] for p in c.get(f"/v1/namespaces/{NS}/plugins").json()["plugins"]}
            assert not {name, name2} & listed
            relay.mend()
            again = _confirm(c, up["upload_id"])  # the staged upload survived the outage
            assert again.json()["success"] is True, again.text
            assert multipart(c, name2, zip_bytes(plugin_files(name2))).json()["success"] is True
    finally:
        srv.stop()
        relay.cut()
    kept = object_keys(s3, BUCKET)
    assert len([k for k in kept if k.startswith("outage/plugins/")]) == 2, kept
