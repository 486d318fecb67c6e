"""Where the plugin lives inside an unpacked archive.

A plugin's ``manifest.py`` and ``pipeline.py`` sit either at the archive root or inside the
archive's single top-level folder; that folder is the *plugin root*. Operating-system litter
(``__MACOSX``, ``.DS_Store``, ``._*``) is ignored when looking at the top level.
"""

from __future__ import annotations

from pathlib import Path

from plughost.archive.entries import is_junk_part
from plughost.archive.errors import LayoutError

REQUIRED_FILES = ("manifest.py", "pipeline.py")
REALTIME_FILE = "realtime.py"
_MAX_LISTED = 10


def find_plugin_root(extracted: Path) -> Path:
    """Return the folder holding the plugin files under ``extracted``.

    Raises LayoutError naming each required file that is missing, or describing the top
    level when it is neither a plugin root nor a single folder.
    """
    top = sorted(
        (child for child in extracted.iterdir() if not is_junk_part(child.name)),
        key=lambda child: child.name,
    )
    if not top:
        raise LayoutError(["archive contains no files"])
    if any(child.name in REQUIRED_FILES for child in top):
        _require_files(extracted, "the archive root")
        return extracted
    if len(top) == 1 and top[0].is_dir():
        _require_files(top[0], f"folder '{top[0].name}/'")
        return top[0]
    listed = ", ".join(_describe(child) for child in top[:_MAX_LISTED])
    if len(top) > _MAX_LISTED:
        listed += ", ..."
    raise LayoutError(
        [
            (
                "manifest.py and pipeline.py must be at the archive root or inside exactly "
                f"one top-level folder (found: {listed})"
            )
        ]
    )


def has_realtime(plugin_root: Path) -> bool:
    """True when the plugin ships a realtime inference module."""
    return (plugin_root / REALTIME_FILE).is_file()


def _require_files(folder: Path, where: str) -> None:
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise LayoutError([f"{name} is missing from {where}" for name in missing])


def _describe(child: Path) -> str:
    return f"{child.name}/" if child.is_dir() else child.name
