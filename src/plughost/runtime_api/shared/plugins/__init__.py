"""``shared.plugins``: the helpers plugins call, by Mixpeek's names.

:func:`open_asset` and :func:`download_asset` (the asset helpers), and, as Mixpeek's
documentation also imports them from here, :func:`parallel_io` and
:func:`concurrent_api_calls` (the same objects as in ``shared.plugins.sdk``).

They are loaded on first use: every realtime replica imports this package (it is the parent of
``shared.plugins.inference``), most never open an asset, and replica start time is measured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .assets import AssetError, AssetFile, download_asset, open_asset
    from .sdk.concurrency import concurrent_api_calls, parallel_io

__all__ = [
    "AssetError",
    "AssetFile",
    "concurrent_api_calls",
    "download_asset",
    "open_asset",
    "parallel_io",
]
_SDK_NAMES = ("concurrent_api_calls", "parallel_io")


def __getattr__(name: str) -> Any:
    if name in __all__ and name not in _SDK_NAMES:
        from . import assets

        return getattr(assets, name)
    if name in _SDK_NAMES:
        from .sdk import concurrency

        return getattr(concurrency, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
