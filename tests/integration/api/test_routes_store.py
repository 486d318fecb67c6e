"""plughost.api.routes_store: the local store's signed URLs. The archive PUT answers the
quoted MD5 as its ETag (as S3 does) and takes no API key; a URL whose signature, expiry or
path was changed is a 403; the signed GET returns the stored archive."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs, urlsplit

import httpx
from inproc import InProcessServer
from support import unique_name

from .helpers import NS, archive, error


def presigned(c: httpx.Client) -> dict[str, str]:
    resp = c.post(
        f"/v1/namespaces/{NS}/plugins/uploads", json={"name": unique_name(), "version": "1.0.0"}
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_put_answers_the_quoted_md5_as_etag(app: InProcessServer) -> None:
    data = archive(unique_name())
    with app.client() as c:
        url = presigned(c)["presigned_url"]
    put = app.anonymous().put(url, content=data, headers={"Content-Type": "application/zip"})
    assert put.status_code == 200 and put.content == b""
    assert put.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'


def test_a_changed_url_is_a_403(app: InProcessServer) -> None:
    with app.client() as c:
        up = presigned(c)
        other = presigned(c)
    url = up["presigned_url"]
    query = parse_qs(urlsplit(url).query)
    base = url.split("?")[0]
    expires, signature = query["expires"][0], query["signature"][0]
    forged = [
        f"{base}?expires={expires}&signature={'0' * len(signature)}",
        f"{base}?expires={int(expires) + 1}&signature={signature}",
        f"{base}?expires=1&signature={signature}",
        f"{base}?expires={expires}",
        base,
        # another upload's signature does not open this one
        f"{base}?{urlsplit(other['presigned_url']).query}",
    ]
    with app.anonymous() as anonymous:
        for bad in forged:
            error(anonymous.put(bad, content=b"PK"), 403, "ForbiddenError")
        assert anonymous.put(url, content=b"PK").status_code == 200


def test_the_signed_get_returns_the_archive_and_nothing_else(app: InProcessServer) -> None:
    name = unique_name()
    data = archive(name)
    with app.client() as c:
        resp = c.post(
            f"/v1/namespaces/{NS}/plugins",
            data={"name": name, "version": "1"},
            files={"file": ("p.zip", data, "application/zip")},
        )
        pid = resp.json()["plugin_id"]
        body = c.get(
            f"/v1/namespaces/{NS}/plugins/{pid}", params={"return_presigned_urls": True}
        ).json()
        assert "presigned_download_url" not in c.get(f"/v1/namespaces/{NS}/plugins/{pid}").json()
    url = body["presigned_download_url"]
    with app.anonymous() as anonymous:
        got = anonymous.get(url)
        assert got.status_code == 200 and got.content == data
        assert got.headers["content-type"] == "application/octet-stream"
        path, query = url.split("?")
        error(anonymous.get(f"{path}x?{query}"), 403, "ForbiddenError")
        error(anonymous.get("/v1/_store/archives/..%2F..%2Fetc%2Fpasswd"), 403, "ForbiddenError")


def test_the_store_routes_take_only_their_method(app: InProcessServer) -> None:
    with app.anonymous() as anonymous:
        error(anonymous.get("/v1/_store/uploads/up_1"), 405, "MethodNotAllowedError")
        error(anonymous.put("/v1/_store/archives/a/b"), 405, "MethodNotAllowedError")
