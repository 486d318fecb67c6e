"""``shared.plugins``: the asset helpers plugins call (:func:`open_asset`, :func:`download_asset`).

They are loaded on first use: every realtime replica imports this package (it is the parent of
``shared.plugins.inference``), most never open an asset, and replica start time is measured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .assets import AssetError, download_asset, open_asset

__all__ = ["AssetError", "download_asset", "open_asset"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import assets

        return getattr(assets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
