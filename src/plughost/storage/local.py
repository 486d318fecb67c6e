"""Archive store on a local folder (the embedded default)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

from plughost.errors import ValidationError
from plughost.storage.base import StoredObject
from plughost.storage.spool import spool
from plughost.storage.staging import commit_copy, staging_key


class LocalArchiveStore:
    """Stores each object as a file under `root`; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        rel = PurePosixPath(key)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValidationError(f"invalid storage key {key!r}")
        return self.root.joinpath(*rel.parts)

    def url_for(self, key: str) -> str:
        return self._path(key).as_uri()

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], max_bytes: int
    ) -> StoredObject:
        target = self._path(key)
        spooled = await spool(chunks, target.parent, max_bytes)
        try:
            os.replace(spooled.path, target)
        except BaseException:
            spooled.path.unlink(missing_ok=True)
            raise
        return StoredObject(key=key, size=spooled.size, etag=spooled.etag)

    def stat(self, key: str) -> StoredObject | None:
        path = self._path(key)
        if not path.is_file():
            return None
        md5 = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as src:
            for block in iter(lambda: src.read(1 << 20), b""):
                md5.update(block)
        return StoredObject(key=key, size=path.stat().st_size, etag=md5.hexdigest())

    def local_path(self, key: str) -> Path:
        return self._path(key)

    # Uploads reach this store through the server's signed route, which writes to the key's
    # staging file (staging_key): only commit, the copy of the bytes confirm checked, writes
    # the key itself, so a PUT racing or replaying a confirm never changes a registered archive.
    def presign_put(self, key: str, expires_s: int) -> str | None:
        return None

    def presign_get(self, key: str, expires_s: int) -> str | None:
        return None

    def staged(self, key: str) -> StoredObject | None:
        return self.stat(staging_key(key))

    def commit(self, key: str, etag: str) -> None:
        commit_copy(self._path(staging_key(key)), self._path(key), etag)

    def discard_staged(self, key: str) -> None:
        self.delete(staging_key(key))

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # prune now-empty folders up to the root
        parent = path.parent
        while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
