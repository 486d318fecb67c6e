"""Intake of a namespace model's archive: safe unpacking, then its format checked.

The archive is unpacked by :func:`plughost.archive.unpack.unpack_archive`, the plugins'
unpacker (no path traversal, no links, no devices, entry count and byte bounds), with the
model limits: the archive and what it unpacks to are each at most ``max_bytes``. The
compression-ratio bound is lifted: weights full of zeros compress a thousandfold, and the
byte bound already stops a bomb at ``max_bytes`` written. One top folder is stripped when it
is all the archive holds (``tar czf m.tar.gz my_model/``), then the files are checked against
the declared format (:mod:`plughost.archive.model_formats`). Nothing in the archive is run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from plughost.archive.errors import ArchiveError
from plughost.archive.limits import IntakeLimits
from plughost.archive.model_formats import format_problems
from plughost.archive.unpack import unpack_archive

# gzip's own limit is about 1032:1; the byte bound is what holds
_NO_RATIO_BOUND = 1e9
MODEL_MAX_ENTRIES = 10_000


class ModelFormatError(ArchiveError):
    """The unpacked files are not the format the model was uploaded as."""


@dataclass(frozen=True)
class ModelIntake:
    root: Path  # the model's files (the top folder stripped), inside the given destination
    size_bytes: int  # bytes of every file


def model_limits(max_bytes: int) -> IntakeLimits:
    return IntakeLimits(
        max_archive_bytes=max_bytes,
        max_entries=MODEL_MAX_ENTRIES,
        max_unpacked_bytes=max_bytes,
        max_compression_ratio=_NO_RATIO_BOUND,
    )


def unpack_model(archive: Path, dest: Path, max_bytes: int) -> ModelIntake:
    """Unpack ``archive`` into the new folder ``dest`` (its parent must exist); raises
    ArchiveError listing every problem, with ``dest`` removed."""
    os.mkdir(dest, 0o755)
    try:
        unpack_archive(archive, dest, model_limits(max_bytes))
        root = _strip_top(dest)
        if not any(p.is_file() for p in root.rglob("*")):
            raise ArchiveError(["the archive holds no file"])
        return ModelIntake(root, tree_bytes(root))
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def take_in_model(archive: Path, dest: Path, model_format: str, max_bytes: int) -> ModelIntake:
    """Unpack and check one model archive into ``dest``; ArchiveError (``dest`` removed)
    when it is unsafe, too large, or not ``model_format``."""
    intake = unpack_model(archive, dest, max_bytes)
    problems = format_problems(intake.root, model_format)
    if problems:
        shutil.rmtree(dest, ignore_errors=True)
        raise ModelFormatError(problems)
    return intake


def check_unpacked(root: Path, model_format: str) -> None:
    """The format check alone, on files unpacked before (a known archive uploaded again)."""
    problems = format_problems(root, model_format)
    if problems:
        raise ModelFormatError(problems)


def _strip_top(dest: Path) -> Path:
    """The one folder ``dest`` holds when it holds nothing else, else ``dest``."""
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return dest


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def scratch_dir(parent: Path, prefix: str) -> Path:
    """A new unique path under ``parent`` (not created), for :func:`take_in_model`."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent)) / "unpacked"
