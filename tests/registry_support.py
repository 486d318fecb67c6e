"""Helpers of the registry tests, in process (tests/integration) and against a live server
(tests/e2e): the multipart upload, the plugin list, the contract's error shape."""

from __future__ import annotations

from typing import Any

import httpx

NS = "ns_default"


def assert_error(resp: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["success"] is False and body["status"] == status
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body


def multipart(c: httpx.Client, name: str, archive: bytes, version: str = "1.0.0", ns: str = NS) -> httpx.Response:
    return c.post(f"/v1/namespaces/{ns}/plugins", data={"name": name, "version": version},
                  files={"file": ("plugin.bin", archive, "application/octet-stream")})


def listed_ids(c: httpx.Client, ns: str = NS) -> set[str]:
    return {p["plugin_id"] for p in c.get(f"/v1/namespaces/{ns}/plugins").json()["plugins"]}
