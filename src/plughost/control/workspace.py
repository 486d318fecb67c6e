"""Deployment folders: each release runs from its own copy of the stored archive."""

from __future__ import annotations

import shutil
from pathlib import Path

from plughost.archive import ArchiveError, IntakeLimits, find_plugin_root, unpack_archive
from plughost.backends.base import StartFailed
from plughost.storage.base import ArchiveStore


class Workspace:
    """Unpacks a release's archive into `root/r{release_id}`.

    A folder unpacked completely from the same archive is used again (its marker
    `r{release_id}.ready` names the archive): replicas that outlived a server still run
    from it (adopted by the next server), and unpacking it afresh would pull their files from under them."""

    def __init__(self, root: Path, store: ArchiveStore, limits: IntakeLimits) -> None:
        self.root = root
        self.store = store
        self.limits = limits

    def folder(self, release_id: int) -> Path:
        return self.root / f"r{release_id}"

    def _marker(self, release_id: int) -> Path:
        return self.root / f"r{release_id}.ready"

    def prepare(self, release_id: int, storage_key: str) -> Path:
        """The plugin root of the release's unpacked archive (validated at upload)."""
        target = self.folder(release_id)
        marker = self._marker(release_id)
        try:
            if target.is_dir() and marker.read_text() == storage_key:
                return find_plugin_root(target)
        except (OSError, ArchiveError):
            pass
        marker.unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        try:
            unpack_archive(self.store.local_path(storage_key), target, self.limits)
            root = find_plugin_root(target)
        except ArchiveError as exc:
            raise StartFailed(f"cannot unpack the stored archive: {exc}") from exc
        marker.write_text(storage_key)
        return root

    def remove(self, release_id: int) -> None:
        self._marker(release_id).unlink(missing_ok=True)
        shutil.rmtree(self.folder(release_id), ignore_errors=True)
