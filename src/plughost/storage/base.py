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
    etag: str  # hex MD5 of the bytes, unquoted (S3: the object's ETag, unquoted)


class ArchiveStore(Protocol):
    """Where plugin archives live. Keys are relative, `/`-separated, chosen by the server.

    A store whose clients upload and download directly (S3) hands out its own presigned
    URLs; the others answer None and the server signs URLs of its own `/v1/_store` routes.
    A direct upload lands in a staging object of the key: confirm checks it (`staged`),
    then `commit` copies exactly those bytes to the key, so a PUT to a still-valid URL
    after confirm cannot change a registered archive."""

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

    def presign_put(self, key: str, expires_s: int) -> str | None:
        """A URL the client PUTs the archive of `key` to, or None (the server's own route)."""
        ...

    def presign_get(self, key: str, expires_s: int) -> str | None:
        """A URL the client downloads `key` from, or None (the server's own route)."""
        ...

    def staged(self, key: str) -> StoredObject | None:
        """What the client uploaded to `presign_put(key)`'s URL (or through the server)."""
        ...

    def commit(self, key: str, etag: str) -> None:
        """Make the staged object with this ETag the object of `key`."""
        ...

    def discard_staged(self, key: str) -> None:
        """Drop the staged object once confirm has decided (registered or failed)."""
        ...
