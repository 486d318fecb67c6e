"""Writing an upload stream to a temp file while counting and hashing it (both stores)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from plughost.errors import PayloadTooLargeError


@dataclass(frozen=True)
class Spooled:
    path: Path  # a temp file beside where the object will live; the caller renames or removes it
    size: int
    md5: bytes

    @property
    def etag(self) -> str:
        return self.md5.hex()


async def spool(chunks: AsyncIterator[bytes], directory: Path, max_bytes: int) -> Spooled:
    """The stream in a new temp file in ``directory``; PayloadTooLargeError past
    ``max_bytes``, with nothing left behind."""
    directory.mkdir(parents=True, exist_ok=True)
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    fd, name = tempfile.mkstemp(dir=directory, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLargeError(
                        f"archive exceeds the limit of {max_bytes} bytes",
                        {"max_bytes": max_bytes},
                    )
                md5.update(chunk)
                out.write(chunk)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Spooled(Path(name), size, md5.digest())
