"""shared.plugins.open_asset, download_asset and shared.utilities.files.resolve_url_to_local_path:
file:// URLs, data: URIs, plughost store URLs and other http(s) URLs."""

from __future__ import annotations

import base64
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from shared.plugins import AssetError, download_asset, open_asset
from shared.plugins.sdk import download_asset as sdk_download_asset
from shared.utilities.files import resolve_url_to_local_path


@pytest.fixture
def asset(tmp_path: Path) -> Path:
    path = tmp_path / "clip one.bin"
    path.write_bytes(b"\x00asset bytes")
    return path


class _StoreHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/pictures/cat.png":
            body = b"\x89PNG from the web"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if not self.path.startswith("/v1/_store/archives/ns/a.bin?expires="):
            self.send_error(404)
            return
        body = b"from the store"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def store_url() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _StoreHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}/v1/_store/archives/ns/a.bin?expires=9&signature=ab"
    finally:
        server.shutdown()
        server.server_close()


def test_open_asset_yields_the_local_path_of_a_file_url(asset: Path) -> None:
    with open_asset(asset.as_uri(), ".bin") as path:
        assert Path(path) == asset
    assert asset.exists()


def test_download_asset_gives_path_and_is_temp_as_the_docs_unpack_it(asset: Path) -> None:
    assert sdk_download_asset is download_asset
    local_path, is_temp = download_asset(asset.as_uri(), suffix=".mp4")
    try:
        assert is_temp and local_path.endswith(".mp4") and Path(local_path) != asset
        assert Path(local_path).read_bytes() == b"\x00asset bytes"
    finally:
        if is_temp:
            os.unlink(local_path)
    assert asset.exists()


def test_download_asset_result_is_still_the_path_for_the_earlier_form(asset: Path) -> None:
    path = download_asset(str(asset))
    assert Path(path).read_bytes() == b"\x00asset bytes" and str(path) == os.fspath(path)
    os.unlink(path)
    assert not Path(str(path)).exists() and asset.exists()


def test_resolve_url_to_local_path_gives_a_local_file_itself(asset: Path) -> None:
    assert resolve_url_to_local_path(asset.as_uri()) == (str(asset), False)


def test_data_uris_are_decoded_into_temporary_files() -> None:
    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG tiny").decode()
    path, is_temp = resolve_url_to_local_path(png)
    try:
        assert is_temp and path.endswith(".png")
        assert Path(path).read_bytes() == b"\x89PNG tiny"
    finally:
        os.unlink(path)
    with open_asset("data:text/plain,hello%20there", suffix=".txt") as text_path:
        assert Path(text_path).read_text() == "hello there"
    assert not Path(text_path).exists()


def test_any_http_url_is_downloaded(store_url: str) -> None:
    web = store_url.split("/v1/", 1)[0] + "/pictures/cat.png"
    path, is_temp = download_asset(web)
    try:
        assert is_temp and path.endswith(".png")
        assert Path(path).read_bytes() == b"\x89PNG from the web"
    finally:
        os.unlink(path)


def test_a_store_url_is_downloaded_and_removed_after_the_block(store_url: str) -> None:
    with open_asset(store_url, ".bin") as path:
        assert Path(path).read_bytes() == b"from the store"
        assert path.endswith(".bin")
    assert not Path(path).exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://bucket/key.mp4", "not supported until plughost stores objects in S3"),
        ("ftp://example.com/x", "not ftp"),
        ("http://127.0.0.1:9/nothing.jpg", "PLUGHOST_SANDBOX_EGRESS_NAMESPACES"),
        ("data:image/png;base64", "without a comma"),
        ("file://otherhost/x", "names another host"),
        ("file:///no/such/file.bin", "asset file not found"),
    ],
)
def test_urls_plughost_cannot_resolve_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(AssetError, match=message):
        download_asset(url)
    with pytest.raises(AssetError, match=message), open_asset(url):
        pass
