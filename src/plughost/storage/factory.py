"""Which archive store a server uses: the local folder, or S3 for plugin archives."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from plughost.config import Settings
from plughost.errors import StorageUnavailableError
from plughost.storage.base import ArchiveStore, StoredObject
from plughost.storage.local import LocalArchiveStore

log = logging.getLogger("plughost.storage")

# the keys of plugin archives (services.uploads.storage_key_for) and of model archives
# (services.models.archive_key_for)
ARCHIVE_PREFIXES = ("plugins/", "models/")


class SplitStore:
    """Plugin and model archives (keys under `plugins/` and `models/`) in `archives`, everything else (batch inputs
    and outputs: this server's working files, up to 10 GB, read and written as local files
    by the batch scheduler) in `local`."""

    def __init__(self, archives: ArchiveStore, local: ArchiveStore) -> None:
        self.archives = archives
        self.local = local

    def _for(self, key: str) -> ArchiveStore:
        return self.archives if key.startswith(ARCHIVE_PREFIXES) else self.local

    def url_for(self, key: str) -> str:
        return self._for(key).url_for(key)

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], max_bytes: int
    ) -> StoredObject:
        return await self._for(key).put_stream(key, chunks, max_bytes)

    def stat(self, key: str) -> StoredObject | None:
        return self._for(key).stat(key)

    def local_path(self, key: str) -> Path:
        return self._for(key).local_path(key)

    def delete(self, key: str) -> None:
        self._for(key).delete(key)

    def presign_put(self, key: str, expires_s: int) -> str | None:
        return self._for(key).presign_put(key, expires_s)

    def presign_get(self, key: str, expires_s: int) -> str | None:
        return self._for(key).presign_get(key, expires_s)

    def staged(self, key: str) -> StoredObject | None:
        return self._for(key).staged(key)

    def commit(self, key: str, etag: str) -> None:
        self._for(key).commit(key, etag)

    def discard_staged(self, key: str) -> None:
        self._for(key).discard_staged(key)


def open_archive_store(settings: Settings) -> ArchiveStore:
    """The store PLUGHOST_STORAGE_URL names, checked before the server takes requests: a
    missing bucket, refused credentials or an unreachable endpoint stop the start with a
    message naming the bucket and the endpoint."""
    local = LocalArchiveStore(settings.archive_dir)
    if not settings.storage_url:
        return local
    from plughost.storage.s3 import S3ArchiveStore

    s3 = S3ArchiveStore.open(
        settings.storage_url,
        settings.s3_endpoint_url,
        settings.archive_cache_dir,
        settings.s3_connect_timeout_s,
    )
    try:
        s3.check()
    except StorageUnavailableError as exc:
        log.error("cannot start: %s", exc.message)
        raise
    log.info("plugin archives on %s", s3.where)
    return SplitStore(s3, local)
