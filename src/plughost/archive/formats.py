"""Which archive format a file is, and whether it is more than one at once.

The format is chosen by magic bytes, never by file name. A file that parses both as a zip
(a central directory found from its end, as ``zipfile`` and ``zipimport`` look for it) and as
a tar or gzip file (read from its start) is a polyglot: the tools that might meet it later
would each see different members, so it is refused outright.
"""

from __future__ import annotations

import tarfile
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from plughost.archive._zipdir import ZipDirectoryError, count_entries

_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_TAR_BLOCK = 512


class ArchiveFormat(StrEnum):
    """Archive formats accepted for plugin uploads."""

    ZIP = "zip"
    TAR_GZ = "tar.gz"
    TAR = "tar"


def detect_format(archive_path: Path) -> ArchiveFormat | None:
    """Return the archive format from its first bytes, or None if it is none we accept."""
    with archive_path.open("rb") as stream:
        head = stream.read(_TAR_BLOCK)
    if head.startswith(_ZIP_MAGICS):
        return ArchiveFormat.ZIP
    if head.startswith(_GZIP_MAGIC):
        return ArchiveFormat.TAR_GZ
    if head[257:262] == b"ustar":
        return ArchiveFormat.TAR
    return None


def polyglot_problem(archive_path: Path) -> str | None:
    """Why the file is refused as readable in more than one format, or None."""
    views = archive_views(archive_path)
    if len(views) < 2:
        return None
    return (
        f"archive is readable both as {' and as '.join(views)} (a polyglot file whose "
        "members differ with the tool that opens it)"
    )


def archive_views(archive_path: Path) -> list[str]:
    """Every format the file parses as: ``gzip``, ``tar`` (a valid first header), ``zip``."""
    size = archive_path.stat().st_size
    views: list[str] = []
    with archive_path.open("rb") as stream:
        head = stream.read(_TAR_BLOCK)
        if head.startswith(_GZIP_MAGIC):
            views.append("gzip")
        if _is_tar_header(head):
            views.append("tar")
        if _has_zip_members(stream, size):
            views.append("zip")
    return views


def _is_tar_header(block: bytes) -> bool:
    if len(block) != _TAR_BLOCK:
        return False
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _has_zip_members(stream: BinaryIO, size: int) -> bool:
    """True when a zip central directory with at least one record is found from the end."""
    try:
        return count_entries(stream, size, 0) > 0
    except (ZipDirectoryError, OSError):
        return False
