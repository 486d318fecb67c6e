"""Deployment folders: each release runs from its own copy of the stored archive."""

from __future__ import annotations

import os
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
        # archive -> the last release unpacked from it here: a redeploy of the same archive
        # links that folder's files instead of unpacking again (an archive's key names one
        # upload, whose bytes never change)
        self._unpacked: dict[str, int] = {}

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
            if not self._link_from(self._unpacked.get(storage_key), target, storage_key):
                unpack_archive(self.store.local_path(storage_key), target, self.limits)
            root = find_plugin_root(target)
        except ArchiveError as exc:
            raise StartFailed(f"cannot unpack the stored archive: {exc}") from exc
        marker.write_text(storage_key)
        self._unpacked[storage_key] = release_id
        return root

    def _link_from(self, release_id: int | None, target: Path, storage_key: str) -> bool:
        """Fill ``target`` with hard links to the files of release ``release_id``'s folder
        when it is still complete from the same archive; False (``target`` left empty)
        otherwise."""
        if release_id is None:
            return False
        source = self.folder(release_id)
        try:
            if self._marker(release_id).read_text() != storage_key:
                return False
            for dirpath, dirnames, filenames in os.walk(source):
                rel = Path(dirpath).relative_to(source)
                for name in dirnames:  # with the unpacked folder's mode (umask aside)
                    (target / rel / name).mkdir()
                    os.chmod(target / rel / name, (Path(dirpath) / name).stat().st_mode & 0o7777)
                for name in filenames:
                    os.link(Path(dirpath) / name, target / rel / name, follow_symlinks=False)
        except OSError:
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            return False
        return True

    def remove(self, release_id: int) -> None:
        self._marker(release_id).unlink(missing_ok=True)
        shutil.rmtree(self.folder(release_id), ignore_errors=True)
