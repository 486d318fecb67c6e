"""Fakes of the services' external systems that the local adapters cannot stand in for."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

from plughost.storage.base import StoredObject
from plughost.storage.local import LocalArchiveStore


async def stream(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    """``data`` as a request body arrives: in chunks."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


class DirectStore(LocalArchiveStore):
    """A store whose clients PUT straight to it (as to S3): an upload lands in a staging
    area, unbounded, and only `commit` makes it the archive. Records what confirm asks."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.staging: dict[str, bytes] = {}
        self.committed: list[tuple[str, str]] = []
        self.discarded: list[str] = []

    def presign_put(self, key: str, expires_s: int) -> str | None:
        return f"https://bucket.test/{key}?X-Expires={expires_s}"

    def client_put(self, key: str, data: bytes) -> None:
        """The client's PUT to the presigned URL: the server never sees these bytes."""
        self.staging[key] = data

    def staged(self, key: str) -> StoredObject | None:
        data = self.staging.get(key)
        if data is None:
            return None
        return StoredObject(key, len(data), hashlib.md5(data).hexdigest())

    def commit(self, key: str, etag: str) -> None:
        self.committed.append((key, etag))
        path = self.local_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.staging[key])

    def discard_staged(self, key: str) -> None:
        self.discarded.append(key)
        self.staging.pop(key, None)
