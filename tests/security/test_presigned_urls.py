"""Presigned URLs as an attack surface (issue 28, "S3"): tampered or replayed, refused.

Two kinds of URL: the server's own (``plughost.storage.signing``: the local store's archive
PUT and download routes, the batch input PUT), and S3's SigV4 URLs on an S3 store (moto's
standalone server here, as tests/e2e/test_s3_archives.py).

- A URL whose key, expiry, method or signature was changed is refused with a 403, never a
  500, whatever bytes the query holds.
- An upload cannot be replayed: a PUT through a still-valid URL that ends after its upload
  was confirmed, or races the confirm, never changes the registered archive (it lands in the
  staging object, which only confirm's checked copy leaves), and the upload is not
  confirmed twice; two confirms at once register it once and keep its archive.
- S3's URLs are bound to one staging key, one method and the expiry asked for (at most a
  day): S3's own check (written out in ``presign_support.sigv4_problem``, since moto does
  not make it) refuses every tampered variant.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from presign_support import flip, sigv4_problem, with_path, with_query
from s3support import CREDENTIALS, MotoServer, object_keys, s3_client, s3_env
from support import LiveServer, plugin_files, unique_name, zip_bytes

from plughost.errors import ForbiddenError
from plughost.storage.signing import UrlSigner

pytestmark = [pytest.mark.e2e, pytest.mark.security]

NS = "ns_default"
BUCKET = "plughost-presign"
PLUGINS = f"/v1/namespaces/{NS}/plugins"


# -- servers ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server on the local store: its own signed URLs."""
    srv = LiveServer(home=tmp_path_factory.mktemp("presign-local")).start(timeout=180)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    srv = MotoServer(tmp_path_factory.mktemp("presign-moto")).start()
    try:
        s3_client(srv.url).create_bucket(Bucket=BUCKET)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def on_s3(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose archives are on s3://plughost-presign/archives (moto)."""
    home = tmp_path_factory.mktemp("presign-s3")
    srv = LiveServer(home=home, extra_env=s3_env(moto.url, BUCKET)).start(timeout=180)
    try:
        yield srv
    finally:
        srv.stop()


# -- helpers ------------------------------------------------------------------------------------
def create(c: httpx.Client, name: str, **extra: Any) -> dict[str, Any]:
    resp = c.post(f"{PLUGINS}/uploads", json={"name": name, "version": "1.0.0", **extra})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def confirm(c: httpx.Client, upload_id: str, **body: Any) -> httpx.Response:
    return c.post(f"{PLUGINS}/uploads/{upload_id}/confirm", json=body)


def download(c: httpx.Client, plugin_id: str) -> bytes:
    """The registered archive's bytes, through the plugin's signed download URL."""
    doc = c.get(f"{PLUGINS}/{plugin_id}", params={"return_presigned_urls": "true"})
    assert doc.status_code == 200, doc.text
    got = httpx.get(doc.json()["presigned_download_url"], timeout=60)
    assert got.status_code == 200, got.text
    return got.content


def refused(resp: httpx.Response) -> None:
    assert resp.status_code == 403, (resp.status_code, resp.text)
    assert resp.json()["error"]["type"] == "ForbiddenError", resp.text


def archive_pair(name: str) -> tuple[bytes, bytes]:
    """Two valid archives of one plugin that differ (the replay's bytes are a real plugin)."""
    first = zip_bytes(plugin_files(name))
    second = zip_bytes({**plugin_files(name), "extra.py": "REPLACED = True\n"})
    assert first != second
    return first, second


# -- the server's own signed URLs ------------------------------------------------------------------
def test_the_signer_binds_method_resource_and_expiry() -> None:
    signer = UrlSigner(b"k" * 32)
    later = int(time.time()) + 600
    sig = signer.signature("PUT", "/v1/_store/uploads/upl_a", later)
    signer.verify("PUT", "/v1/_store/uploads/upl_a", str(later), sig)
    forged = [
        ("GET", "/v1/_store/uploads/upl_a", str(later), sig),  # another method
        ("PUT", "/v1/_store/uploads/upl_b", str(later), sig),  # another resource
        ("PUT", "/v1/_store/uploads/upl_a", str(later + 1), sig),  # a later expiry
        ("PUT", "/v1/_store/uploads/upl_a", str(later), flip(sig)),
        ("PUT", "/v1/_store/uploads/upl_a", str(later), sig.upper()),
        ("PUT", "/v1/_store/uploads/upl_a", f"0{later}", sig),  # the same number, other text
        ("PUT", "/v1/_store/uploads/upl_a", "²", sig),  # a digit to str.isdigit(), not int()
        ("PUT", "/v1/_store/uploads/upl_a", "9" * 5000, sig),  # past int()'s digit limit
        ("PUT", "/v1/_store/uploads/upl_a", str(later), "é" * 64),  # compare_digest's TypeError
        ("PUT", "/v1/_store/uploads/upl_a", str(later), None),
    ]
    for method, resource, expires, signature in forged:
        with pytest.raises(ForbiddenError):
            signer.verify(method, resource, expires, signature)
    past = int(time.time()) - 1
    with pytest.raises(ForbiddenError, match="expired"):
        signer.verify("PUT", "/r", str(past), signer.signature("PUT", "/r", past))


def test_a_tampered_upload_url_is_a_403_never_a_500(local: LiveServer) -> None:
    name = unique_name("tamper")
    with local.client() as c:
        up, other = create(c, name), create(c, unique_name("other"))
    url = up["presigned_url"]
    base, query = url.split("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    expires, sig = params["expires"], params["signature"]
    other_base = other["presigned_url"].split("?")[0]
    forged = [
        f"{other_base}?{query}",  # the key (upload) changed
        f"{base}?expires={int(expires) + 86400}&signature={sig}",  # the expiry extended
        f"{base}?expires={expires}&signature={flip(sig)}",  # the signature altered
        f"{base}?expires={expires}&signature={sig}0",
        f"{base}?expires=%C2%B2&signature={sig}",
        f"{base}?expires={'9' * 5000}&signature={sig}",
        f"{base}?expires={expires}&signature={'%C3%A9' * 64}",
        f"{base}?expires={expires}&expires={int(expires) + 86400}&signature={sig}",
        base,
    ]
    archive = zip_bytes(plugin_files(name))
    with local.anonymous() as anonymous:
        for bad in forged:
            refused(anonymous.put(bad, content=archive))
        assert anonymous.put(url, content=archive).status_code == 200


def test_a_tampered_download_url_is_a_403(local: LiveServer) -> None:
    names = unique_name("dl"), unique_name("dl")
    with local.client() as c:
        ids = []
        for name in names:
            res = c.post(
                PLUGINS,
                data={"name": name, "version": "1.0.0"},
                files={"file": ("p.zip", zip_bytes(plugin_files(name)), "application/zip")},
            )
            assert res.json()["success"], res.text
            ids.append(res.json()["plugin_id"])
        urls = [
            c.get(f"{PLUGINS}/{pid}", params={"return_presigned_urls": "true"}).json()[
                "presigned_download_url"
            ]
            for pid in ids
        ]
    mine, theirs = urls
    path, query = mine.split("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    forged = [
        f"{theirs.split('?')[0]}?{query}",  # another archive's key
        f"{path}?expires={int(params['expires']) + 3600}&signature={params['signature']}",
        f"{path}?expires={params['expires']}&signature={flip(params['signature'])}",
        f"{path}.x?{query}",
    ]
    with local.anonymous() as anonymous:
        for bad in forged:
            refused(anonymous.get(bad))
        assert anonymous.get(mine).status_code == 200


def test_a_tampered_batch_input_url_is_a_403(local: LiveServer) -> None:
    with local.client() as c:
        made = [
            c.post(f"/v1/namespaces/{NS}/batches/uploads", json={"file_name": "in.jsonl"})
            for _ in range(2)
        ]
    assert all(m.status_code == 200 for m in made), [m.text for m in made]
    url, other = (m.json()["presigned_url"] for m in made)
    path, query = url.split("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    forged = [
        f"{other.split('?')[0]}?{query}",  # another input's key
        f"{path.rsplit('/', 1)[0]}/other.jsonl?{query}",
        f"{path}?expires={int(params['expires']) + 86400}&signature={params['signature']}",
        f"{path}?expires={params['expires']}&signature={flip(params['signature'])}",
    ]
    with local.anonymous() as anonymous:
        for bad in forged:
            refused(anonymous.put(bad, content=b'{"text": "x"}\n'))
        assert anonymous.put(url, content=b'{"text": "x"}\n').status_code == 200


def test_a_put_replayed_after_confirm_never_changes_the_archive(local: LiveServer) -> None:
    name = unique_name("replay")
    first, second = archive_pair(name)
    with local.client() as c:
        up = create(c, name)
        url = up["presigned_url"]
        etag = httpx.put(url, content=first, timeout=60).headers["etag"]
        done = confirm(c, up["upload_id"], etag=etag, file_size_bytes=len(first))
        assert done.json()["success"] is True, done.text
        replay = httpx.put(url, content=second, timeout=60)
        assert replay.status_code == 409, replay.text
        again = confirm(c, up["upload_id"])
        assert again.status_code == 409 and "already confirmed" in again.text, again.text
        assert download(c, done.json()["plugin_id"]) == first


def test_a_put_racing_the_confirm_never_changes_the_archive(local: LiveServer) -> None:
    """The replay that started before the confirm and ends after it: its bytes reach only
    the staging file, and the upload stays confirmed (not reopened for a second confirm)."""
    name = unique_name("race")
    first, second = archive_pair(name)
    release = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield second[:100]
        release.wait(120)
        yield second[100:]

    with local.client() as c, ThreadPoolExecutor(1) as pool:
        up = create(c, name)
        url = up["presigned_url"]
        assert httpx.put(url, content=first, timeout=60).status_code == 200
        racing = pool.submit(httpx.put, url, content=slow_body(), timeout=180)
        time.sleep(2)  # the racing PUT is past its checks and streaming
        done = confirm(c, up["upload_id"], file_size_bytes=len(first))
        assert done.json()["success"] is True, done.text
        release.set()
        assert racing.result(180).status_code == 409
        again = confirm(c, up["upload_id"])
        assert again.status_code == 409 and "already confirmed" in again.text, again.text
        assert download(c, done.json()["plugin_id"]) == first


def test_two_confirms_at_once_register_once_and_keep_the_archive(local: LiveServer) -> None:
    name = unique_name("twice")
    archive = zip_bytes(plugin_files(name))
    with local.client() as c, ThreadPoolExecutor(2) as pool:
        up = create(c, name)
        assert httpx.put(up["presigned_url"], content=archive, timeout=60).status_code == 200

        def one(_: int) -> httpx.Response:
            with local.client() as own:
                return confirm(own, up["upload_id"])

        answers = list(pool.map(one, range(2)))
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 409], [a.text for a in answers]
        winner = next(a for a in answers if a.status_code == 200).json()
        assert winner["success"] is True, winner
        assert download(c, winner["plugin_id"]) == archive


# -- S3's presigned URLs --------------------------------------------------------------------------
def test_s3_urls_are_bound_to_one_staging_key_method_and_expiry(on_s3: LiveServer) -> None:
    key_id, secret = CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    with on_s3.client() as c:
        up = create(c, unique_name("s3sig"), presigned_url_expiration=600)
        other = create(c, unique_name("s3sig"))
        too_long = c.post(
            f"{PLUGINS}/uploads",
            json={
                "name": unique_name("s3sig"),
                "version": "1.0.0",
                "presigned_url_expiration": 86401,
            },
        )
        assert too_long.status_code == 422, too_long.text  # at most a day
    url = up["presigned_url"]
    parts = urlsplit(url)
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.path == f"/{BUCKET}/archives/incoming/{up['s3_key']}"  # the staging key only
    assert params["X-Amz-Expires"] == "600" and params["X-Amz-SignedHeaders"] == "host"
    assert sigv4_problem(url, "PUT", key_id, secret) is None  # the check itself holds
    final_key = f"/{BUCKET}/archives/{up['s3_key']}"
    forged = {
        "the archive's own key": with_path(url, final_key),
        "another upload's key": with_path(url, urlsplit(other["presigned_url"]).path),
        "another folder": with_path(url, f"/{BUCKET}/archives/plugins/x.archive"),
        "a longer expiry": with_query(url, **{"X-Amz-Expires": "604800"}),
        "an earlier date": with_query(url, **{"X-Amz-Date": "20200101T000000Z"}),
        "an altered signature": with_query(
            url, **{"X-Amz-Signature": flip(params["X-Amz-Signature"])}
        ),
        "another upload's signature": with_query(
            url,
            **{
                "X-Amz-Signature": parse_qs(urlsplit(other["presigned_url"]).query)[
                    "X-Amz-Signature"
                ][0]
            },
        ),
    }
    for what, bad in forged.items():
        assert sigv4_problem(bad, "PUT", key_id, secret) is not None, what
    assert sigv4_problem(url, "GET", key_id, secret) is not None  # a download of it
    assert sigv4_problem(url, "DELETE", key_id, secret) is not None
    later = datetime.now(UTC) + timedelta(seconds=601)
    assert sigv4_problem(url, "PUT", key_id, secret, now=later) == "expired"


def test_s3_upload_replayed_after_confirm_never_changes_the_archive(
    on_s3: LiveServer, moto: MotoServer
) -> None:
    s3 = s3_client(moto.url)
    name = unique_name("s3replay")
    first, second = archive_pair(name)
    with on_s3.client() as c:
        up = create(c, name)
        url = up["presigned_url"]
        etag = httpx.put(url, content=first, timeout=60).headers["etag"]
        done = confirm(c, up["upload_id"], etag=etag, file_size_bytes=len(first))
        assert done.json()["success"] is True, done.text
        # the URL is still valid: S3 takes the PUT, into the staging object only
        assert httpx.put(url, content=second, timeout=60).status_code == 200
        again = confirm(c, up["upload_id"])
        assert again.status_code == 409 and "already confirmed" in again.text, again.text
        final = s3.head_object(Bucket=BUCKET, Key=f"archives/{up['s3_key']}")
        assert final["ETag"].strip('"') == hashlib.md5(first).hexdigest()
        assert download(c, done.json()["plugin_id"]) == first
        # and a server without a cached copy fetches the confirmed bytes, not the replay's
        cache = on_s3.home / "archive-cache" / up["s3_key"]
        cache.unlink(missing_ok=True)
        assert download(c, done.json()["plugin_id"]) == first


def test_s3_confirm_of_a_replaced_object_is_refused(on_s3: LiveServer, moto: MotoServer) -> None:
    """The client confirms what it uploaded (its ETag); a replacement in between is refused,
    and nothing of it is registered."""
    s3 = s3_client(moto.url)
    name = unique_name("s3swap")
    first, second = archive_pair(name)
    with on_s3.client() as c:
        up = create(c, name)
        etag = httpx.put(up["presigned_url"], content=first, timeout=60).headers["etag"]
        assert httpx.put(up["presigned_url"], content=second, timeout=60).status_code == 200
        bad = confirm(c, up["upload_id"], etag=etag, file_size_bytes=len(first))
        assert bad.status_code == 422 and "etag mismatch" in bad.text, bad.text
        assert c.get(f"{PLUGINS}/{name}_1_0_0").status_code == 404
        assert f"archives/{up['s3_key']}" not in object_keys(s3, BUCKET)
