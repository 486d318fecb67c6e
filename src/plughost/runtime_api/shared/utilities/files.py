"""``shared.utilities.files``: Mixpeek's older import path of the asset resolver.

Mixpeek's documentation keeps ``from shared.utilities.files import resolve_url_to_local_path``
working for older plugins and points new ones to ``shared.plugins.open_asset``. Here it is the
same function as ``shared.plugins.assets.resolve_url_to_local_path``: ``(path, is_temp)``.
"""

from __future__ import annotations

from ..plugins.assets import AssetError, AssetFile, resolve_url_to_local_path

__all__ = ["AssetError", "AssetFile", "resolve_url_to_local_path"]
