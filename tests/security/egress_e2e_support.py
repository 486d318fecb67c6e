"""Shared by the egress allowlist's end-to-end tests (test_egress_allowlist.py,
test_egress_adoption.py): the plugin that fetches a URL, and the proxy sockets a server
listens on now."""

from __future__ import annotations

from pathlib import Path

from plughost.egress import SOCKET_NAME
from plughost.egress.folders import egress_root

# fetches inputs["url"] with urllib (the proxy variables) and with download_asset
FETCHER = """
import urllib.request
from pathlib import Path

from shared.plugins import AssetError, download_asset


class Service:
    def __call__(self, inputs, parameters):
        out = {}
        try:
            with urllib.request.urlopen(inputs["url"], timeout=20) as response:
                out["body"] = response.read().decode()
        except Exception as exc:
            out["error"] = type(exc).__name__ + ": " + str(exc)
        try:
            path, _ = download_asset(inputs["url"])
            out["asset"] = Path(path).read_text()
        except AssetError as exc:
            out["asset_error"] = str(exc)
        return out


def get_inference_service(**kwargs):
    return Service()
"""


def proxy_root(home: Path) -> Path:
    """The egress proxy's folder of the servers on ``home`` (in the temp folder)."""
    return egress_root(home.resolve())


def listening(home: Path) -> set[Path]:
    """The proxy folders of the servers on ``home`` whose socket exists now."""
    root = proxy_root(home)
    return {f for f in root.iterdir() if (f / SOCKET_NAME).exists()} if root.is_dir() else set()
