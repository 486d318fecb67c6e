"""``shared.plugins.sdk``: the Plugin SDK helpers by Mixpeek's names.

:func:`parallel_io` and :func:`concurrent_api_calls` (both call forms: see
:mod:`.concurrency`), and the asset helpers :func:`download_asset` and :func:`open_asset`
(also importable from ``shared.plugins``).
"""

from __future__ import annotations

from ..assets import AssetError, AssetFile, download_asset, open_asset
from .concurrency import concurrent_api_calls, parallel_io, run_coroutine

__all__ = [
    "AssetError",
    "AssetFile",
    "concurrent_api_calls",
    "download_asset",
    "open_asset",
    "parallel_io",
    "run_coroutine",
]
