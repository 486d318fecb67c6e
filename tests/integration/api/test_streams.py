"""plughost.api.streams: body limits (declared and streamed), the empty PUT, and the
multipart form of ``POST .../plugins`` (fields it takes, fields missing or repeated or of the
wrong kind, a body that is not multipart). The app runs with a 200 kB archive limit."""

from __future__ import annotations

from collections.abc import Iterator

from inproc import InProcessServer
from support import unique_name

from .conftest import LIMITS
from .helpers import NS, archive, error

FORM = f"/v1/namespaces/{NS}/plugins"
UPLOAD_LIMIT = LIMITS["max_archive_bytes"] + LIMITS["multipart_overhead_bytes"]


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """``total`` bytes as a stream: no Content-Length for the server to refuse up front."""
    while total > 0:
        yield b"x" * min(size, total)
        total -= size


def test_a_declared_length_past_the_limit_is_refused_before_reading(app: InProcessServer) -> None:
    with app.client() as c:
        resp = c.post(
            FORM,
            content=b"tiny",
            headers={
                "Content-Type": "multipart/form-data; boundary=b",
                "Content-Length": str(UPLOAD_LIMIT + 1),
            },
        )
        err = error(resp, 413, "PayloadTooLargeError")
        assert err["details"] == {"max_bytes": UPLOAD_LIMIT}
        assert str(UPLOAD_LIMIT + 1) in err["message"]


def test_a_streamed_body_past_the_limit_is_a_413(app: InProcessServer) -> None:
    with app.client() as c:
        resp = c.post(
            FORM,
            content=chunks(UPLOAD_LIMIT + 100_000),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert error(resp, 413, "PayloadTooLargeError")["details"] == {"max_bytes": UPLOAD_LIMIT}
        up = c.post(f"{FORM}/uploads", json={"name": unique_name(), "version": "1"}).json()
    put = app.anonymous().put(up["presigned_url"], content=chunks(LIMITS["max_archive_bytes"] + 1))
    assert error(put, 413, "PayloadTooLargeError")["details"] == {
        "max_bytes": LIMITS["max_archive_bytes"]
    }


def test_a_put_of_no_bytes_is_a_400(app: InProcessServer) -> None:
    with app.client() as c:
        up = c.post(f"{FORM}/uploads", json={"name": unique_name(), "version": "1"}).json()
    put = app.anonymous().put(up["presigned_url"], content=iter([b"", b""]))
    assert "request body is empty" in error(put, 400, "BadRequestError")["message"]


def test_a_body_that_is_not_multipart_is_a_400(app: InProcessServer) -> None:
    with app.client() as c:
        for ctype in ("application/json", "application/zip", ""):
            resp = c.post(FORM, content=b"{}", headers={"Content-Type": ctype})
            assert "multipart/form-data" in error(resp, 400, "BadRequestError")["message"]


def test_a_malformed_multipart_body_is_a_400(app: InProcessServer) -> None:
    with app.client() as c:
        resp = c.post(
            FORM,
            content=b"--b\r\nContent-Disposition: nonsense\r\n\r\nx\r\n--b--\r\n",
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert "malformed multipart body" in error(resp, 400, "BadRequestError")["message"]


def test_missing_fields_are_named(app: InProcessServer) -> None:
    with app.client() as c:
        no_file = c.post(
            FORM,
            data={"name": unique_name(), "version": "1"},
            files={"description": (None, "text only")},
        )
        assert error(no_file, 422, "ValidationError")["details"] == {"missing": ["file"]}
        name = unique_name()
        no_version = c.post(
            FORM, data={"name": name}, files={"file": ("p.zip", archive(name), "application/zip")}
        )
        assert error(no_version, 422, "ValidationError")["details"] == {"missing": ["version"]}


def test_fields_of_the_wrong_kind_are_refused(app: InProcessServer) -> None:
    name = unique_name()
    with app.client() as c:
        text_file = c.post(
            FORM, data={"name": name, "version": "1"}, files={"file": (None, "not a file")}
        )
        assert "'file' must be a file" in error(text_file, 422, "ValidationError")["message"]
        # one file part at most: a name or description sent as a file is a second one
        for field in ("name", "description"):
            two = c.post(
                FORM,
                data={"version": "1", **({"name": name} if field != "name" else {})},
                files={
                    "file": ("p.zip", archive(name), "application/zip"),
                    field: ("f.txt", b"abc", "text/plain"),
                },
            )
            assert "Too many files" in error(two, 400, "BadRequestError")["message"]


def test_unknown_and_repeated_fields_are_named_in_details(app: InProcessServer) -> None:
    name = unique_name()
    files = {"file": ("p.zip", archive(name), "application/zip")}
    with app.client() as c:
        extra = c.post(
            FORM, data={"name": name, "version": "1", "zeta": "1", "alpha": "2"}, files=files
        )
        assert error(extra, 422, "ValidationError")["details"] == {"unknown": ["alpha", "zeta"]}
        twice = c.post(FORM, data={"name": [name, name], "version": "1"}, files=files)
        assert error(twice, 422, "ValidationError")["details"] == {"repeated": ["name"]}


def test_the_archive_is_stored_byte_for_byte(app: InProcessServer) -> None:
    name = unique_name()
    data = archive(name)
    with app.client() as c:
        up = c.post(
            FORM,
            data={"name": name, "version": "1", "description": ""},
            files={"file": ("p.zip", data, "application/zip")},
        ).json()
        assert up["validation_status"] == "passed", up
        got = c.get(f"{FORM}/{up['plugin_id']}", params={"return_presigned_urls": "true"}).json()
    download = app.anonymous().get(got["presigned_download_url"])
    assert download.status_code == 200 and download.content == data
