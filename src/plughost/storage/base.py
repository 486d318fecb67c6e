"""The archive store interface."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    etag: str  # hex MD5 of the bytes, unquoted


class ArchiveStore(Protocol):
    """Where plugin archives live. Keys are relative, `/`-separated, chosen by the server."""

    def url_for(self, key: str) -> str:
        """The archive's URL as shown to clients (`s3_archive_url`)."""
        ...

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], max_bytes: int
    ) -> StoredObject:
        """Store a stream under `key`; raise PayloadTooLargeError past `max_bytes` (nothing kept)."""
        ...

    def stat(self, key: str) -> StoredObject | None: ...

    def local_path(self, key: str) -> Path:
        """A local file holding the object (downloaded first for remote stores)."""
        ...

    def delete(self, key: str) -> None: ...
