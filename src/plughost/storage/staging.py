"""The local store's staging of presigned uploads: where the signed PUT route writes, and the
checked copy that makes those bytes the archive.

The PUT route never writes an archive's key: it writes ``incoming/<key>``. Confirm reads the
staged file's size and MD5, then :func:`commit_copy` copies it to the key, hashing the bytes
it copies and keeping the copy only when they still have the MD5 that confirm checked. A PUT
that lands while confirm runs, or replays the URL afterwards, changes only the staging file,
which confirm discards and nothing ever deploys."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from plughost.errors import ConflictError

STAGING = "incoming/"
_BLOCK = 1 << 20


def staging_key(key: str) -> str:
    """Where a presigned upload of ``key`` lands before confirm."""
    return STAGING + key


def commit_copy(source: Path, target: Path, etag: str) -> None:
    """Copy ``source`` to ``target`` (atomically: temp file and rename) only if the bytes
    copied have the MD5 ``etag``; ConflictError otherwise (``target`` untouched)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".commit-")
    try:
        md5 = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            for block in iter(lambda: src.read(_BLOCK), b""):
                md5.update(block)
                out.write(block)
        if md5.hexdigest() != etag:
            raise ConflictError(
                "the uploaded archive changed while it was confirmed; confirm again"
            )
        os.replace(tmp_name, target)
    except FileNotFoundError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise ConflictError(
            "the uploaded archive went away while it was confirmed; PUT it and confirm again"
        ) from exc
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
