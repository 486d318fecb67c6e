"""Packing a plugin folder into the archive the server takes, and the server's own intake
run on it locally (``plughost check``): the same functions, the same messages."""

from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from plughost.archive import IntakeLimits, IntakeResult, validate_archive
from plughost.cli.author.errors import CliError
from plughost.config import Settings

SKIPPED_DIRS = frozenset(
    {
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".tox",
        ".idea",
        ".vscode",
        "node_modules",
    }
)
SKIPPED_SUFFIXES = (".pyc", ".pyo")
SKIPPED_NAMES = frozenset({".DS_Store"})
_EPOCH = (1980, 1, 1, 0, 0, 0)


def plugin_files(folder: Path) -> list[Path]:
    """The files of ``folder`` that go into its archive, sorted (caches, version-control and
    editor folders, compiled files left out). CliError for a missing folder or a link."""
    if not folder.is_dir():
        raise CliError(f"{folder} is not a folder")
    files: list[Path] = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part in SKIPPED_DIRS for part in rel.parts[:-1]) or _skipped(path):
            continue
        if path.is_symlink():
            raise CliError(f"{rel.as_posix()} is a symbolic link; archives may not hold links")
        if path.is_file():
            files.append(path)
    return files


def _skipped(path: Path) -> bool:
    return (
        path.name in SKIPPED_DIRS or path.name in SKIPPED_NAMES or path.suffix in SKIPPED_SUFFIXES
    )


def pack_folder(folder: Path) -> bytes:
    """A zip of ``folder``'s contents at the archive root; the same bytes for the same files
    (fixed timestamps, sorted entries)."""
    folder = folder.resolve()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in plugin_files(folder):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def intake_limits(settings: Settings) -> IntakeLimits:
    """The limits the server's upload service applies (same settings, same defaults)."""
    return IntakeLimits(
        max_archive_bytes=settings.max_archive_bytes,
        max_entries=settings.max_archive_entries,
        manifest_timeout_s=settings.manifest_timeout_s,
    )


@contextmanager
def validated(
    folder: Path, settings: Settings, limits: IntakeLimits | None = None
) -> Iterator[IntakeResult]:
    """Pack ``folder`` and run the server's intake on the archive in a temporary folder.

    Yields the result (``plugin_root`` points into the unpacked copy while the block runs);
    everything is removed afterwards.
    """
    data = pack_folder(folder)
    work = Path(tempfile.mkdtemp(prefix="plughost-check-"))
    try:
        archive = work / "plugin.zip"
        archive.write_bytes(data)
        yield validate_archive(archive, work / "intake", limits or intake_limits(settings))
    finally:
        shutil.rmtree(work, ignore_errors=True)
