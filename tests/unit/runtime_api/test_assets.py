"""shared.plugins.open_asset and download_asset: file:// URLs and plughost store URLs."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from shared.plugins import AssetError, download_asset, open_asset


@pytest.fixture
def asset(tmp_path: Path) -> Path:
    path = tmp_path / "clip one.bin"
    path.write_bytes(b"\x00asset bytes")
    return path


class _StoreHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
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


def test_download_asset_copies_into_a_new_file_with_the_suffix(asset: Path) -> None:
    path = download_asset(asset.as_uri(), suffix=".mp4")
    try:
        assert path.endswith(".mp4") and Path(path) != asset
        assert Path(path).read_bytes() == b"\x00asset bytes"
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
        ("https://example.com/cat.jpg", "file:// URLs and its own store"),
        ("ftp://example.com/x", "not ftp"),
        ("file://otherhost/x", "names another host"),
        ("file:///no/such/file.bin", "asset file not found"),
    ],
)
def test_urls_plughost_cannot_resolve_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(AssetError, match=message):
        download_asset(url)
    with pytest.raises(AssetError, match=message), open_asset(url):
        pass
