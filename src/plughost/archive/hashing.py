"""Content hash of a plugin tree."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK_BYTES = 64 * 1024


def code_hash(plugin_root: Path) -> str:
    """Return the sha256 hex digest of every regular file under ``plugin_root``.

    Files are taken in order of their relative POSIX path (string order); for each, the
    digest is fed the UTF-8 path, a NUL byte, the file's size as 8 big-endian bytes, then the
    file's bytes; the size keeps two different trees from feeding the same byte stream.
    Directories (empty or
    not) contribute nothing, and symbolic links are not followed, so the hash depends only on
    file paths and contents: the same files give the same hash whatever archive format or
    layout (root or single folder) carried them.
    """
    digest = hashlib.sha256()
    for relative, path in _files(plugin_root):
        digest.update(relative.encode("utf-8"))
        digest.update(b"\0")
        digest.update(path.stat().st_size.to_bytes(8, "big"))
        with path.open("rb") as stream:
            while chunk := stream.read(_CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)
