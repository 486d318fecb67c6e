"""The runtime API plugins import: Mixpeek's module names, served by plughost.

This folder is put on ``sys.path`` (after the plugin folder) of every process that runs
plugin code: replicas on both backends, batch workers and the manifest reader. Its
top-level packages :data:`TOP_LEVEL_PACKAGES` (``shared`` and ``engine``) are the API;
docs/plugin-runtime.md describes every name. Modules here stay light at import: pandas and
numpy are imported inside the functions that need them, so a plain realtime replica does not
pay for them at start.

Inside plughost the same files are also reachable as ``plughost.runtime_api.<...>``; plughost
itself only imports :mod:`plughost.runtime_api.extractor_request` that way.
"""

from __future__ import annotations

from pathlib import Path

RUNTIME_API_DIR = Path(__file__).resolve().parent
"""The folder to put on ``sys.path`` so that ``import shared`` and ``import engine`` work."""

TOP_LEVEL_PACKAGES: tuple[str, ...] = ("shared", "engine")
"""The top-level package names this folder provides; plugins may not ship their own."""
