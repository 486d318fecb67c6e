"""Deployment folders: each release runs from its own copy of the stored archive."""

from __future__ import annotations

import shutil
from pathlib import Path

from plughost.archive import ArchiveError, IntakeLimits, find_plugin_root, unpack_archive
from plughost.backends.base import StartFailed
from plughost.storage.base import ArchiveStore


class Workspace:
    """Unpacks a release's archive into `root/r{release_id}` (fresh each time)."""

    def __init__(self, root: Path, store: ArchiveStore, limits: IntakeLimits) -> None:
        self.root = root
        self.store = store
        self.limits = limits

    def folder(self, release_id: int) -> Path:
        return self.root / f"r{release_id}"

    def prepare(self, release_id: int, storage_key: str) -> Path:
        """Extract the archive again (it was validated at upload) and return the plugin root."""
        target = self.folder(release_id)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        try:
            unpack_archive(self.store.local_path(storage_key), target, self.limits)
            return find_plugin_root(target)
        except ArchiveError as exc:
            raise StartFailed(f"cannot unpack the stored archive: {exc}") from exc

    def remove(self, release_id: int) -> None:
        shutil.rmtree(self.folder(release_id), ignore_errors=True)
