"""Registry behaviour that needs a `plughost serve` process: limits set through its environment,
plugins kept across its restart, the admin key it generates on first start."""

from __future__ import annotations

from typing import Any

import httpx
from registry_support import NS, assert_error, listed_ids, multipart
from support import LiveServer, plugin_files, unique_name, zip_bytes


def test_oversized_archive_is_413(tmp_path: Any, database_url: str) -> None:
    srv = LiveServer(home=tmp_path / "small", database_url=database_url,
                     extra_env={"PLUGHOST_MAX_ARCHIVE_BYTES": "100000"}).start()
    try:
        big = b"\1" * 200_000
        with srv.client() as c:
            resp = c.post(f"/v1/namespaces/{NS}/plugins", data={"name": "biggy", "version": "1"},
                          files={"file": ("p.zip", big, "application/zip")})
            assert_error(resp, 413, "PayloadTooLargeError")
            up = c.post(f"/v1/namespaces/{NS}/plugins/uploads", json={"name": "biggy", "version": "1.0.0"}).json()

            def chunks():  # no Content-Length: the server must stop while streaming
                for _ in range(20):
                    yield b"\1" * 20_000

            assert_error(httpx.put(up["presigned_url"], content=chunks()), 413, "PayloadTooLargeError")
            assert "biggy_1_0_0" not in listed_ids(c)
            archives = list((srv.home / "archives").rglob("*"))
            assert not [p for p in archives if p.is_file()], archives
    finally:
        srv.stop()


def test_plugins_persist_across_restart(tmp_path: Any, database_url: str) -> None:
    srv = LiveServer(home=tmp_path / "persist", database_url=database_url).start()
    name = unique_name()
    try:
        with srv.client() as c:
            assert multipart(c, name, zip_bytes(plugin_files(name))).json()["success"]
        srv.stop()
        srv.start()
        with srv.client() as c:
            detail = c.get(f"/v1/namespaces/{NS}/plugins/{name}_1_0_0")
            assert detail.status_code == 200 and detail.json()["plugin"]["name"] == name
    finally:
        srv.stop()


def test_generated_admin_key_is_written_0600(tmp_path: Any) -> None:
    srv = LiveServer(home=tmp_path / "gen")
    srv.extra_env = {"PLUGHOST_BOOTSTRAP_KEY": ""}
    srv.start()
    try:
        key_file = srv.home / "admin-key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_file.read_text().strip()
        assert key in srv.logs()
        with srv.client(key=key) as c:
            assert c.get(f"/v1/namespaces/{NS}/plugins").status_code == 200
    finally:
        srv.stop()
