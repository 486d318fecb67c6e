"""The namespace models' files on this machine, laid out for plugin processes.

Under ``settings.models_dir``:

* ``blobs/<sha256>/``: an archive's files, unpacked once per content (files 0444, folders
  0555), moved in whole by one rename, so a reader never sees half a blob and two writers
  of the same content leave one;
* ``ns/<namespace_id>/<model_id>/``: the same files as hard links to the blob's (one inode:
  N namespaces and replicas share one copy in the page cache), made in a temp folder and
  renamed into place;
* ``ns/<namespace_id>/index.json``: what the namespace has, replaced whole (temp file and
  ``os.replace``) on every change; ``path`` is relative to the index's folder.

Plugin processes see ``ns/<namespace_id>`` read-only and nothing else of this folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from plughost.archive.model_intake import unpack_model
from plughost.config import Settings
from plughost.sandbox.models import ensure_namespace_folder
from plughost.storage.base import ArchiveStore

log = logging.getLogger("plughost.models")

_READ_BLOCK = 1 << 20
_STALE_S = 3600.0


@dataclass(frozen=True)
class IndexEntry:
    """One model's line in a namespace's index.json."""

    model_id: str
    name: str
    version: str
    model_format: str
    sha256: str
    framework: str | None
    task_type: str | None

    def as_json(self) -> dict[str, str | None]:
        return {
            "name": self.name,
            "version": self.version,
            "model_format": self.model_format,
            "sha256": self.sha256,
            "framework": self.framework,
            "task_type": self.task_type,
            "path": self.model_id,
        }


class ModelFiles:
    """Blobs, namespace folders and their indexes (one instance per server)."""

    def __init__(self, settings: Settings, store: ArchiveStore) -> None:
        self.root = settings.models_dir
        self.store = store
        self.max_bytes = settings.model_max_bytes
        self.blobs = self.root / "blobs"
        self.namespaces = self.root / "ns"
        self.scratch = self.root / "tmp"  # on the same file system: renames into blobs/
        for folder in (self.blobs, self.namespaces, self.scratch):
            folder.mkdir(parents=True, exist_ok=True)

    # -- blobs ---------------------------------------------------------------------------
    def blob_dir(self, sha256: str) -> Path:
        return self.blobs / sha256

    def has_blob(self, sha256: str) -> bool:
        return self.blob_dir(sha256).is_dir()

    def install_blob(self, sha256: str, unpacked: Path) -> Path:
        """Make ``unpacked`` (a folder under :attr:`scratch`) the blob of ``sha256``, read-only;
        when another writer got there first, its blob is kept and ``unpacked`` removed."""
        target = self.blob_dir(sha256)
        if target.is_dir():
            _remove_tree(unpacked)
            return target
        _make_read_only(unpacked)
        try:
            os.rename(unpacked, target)
        except OSError:
            if not target.is_dir():
                raise
            _remove_tree(unpacked)  # a concurrent writer installed the same content
        return target

    def ensure_blob(self, sha256: str, archive_key: str) -> Path:
        """The blob of ``sha256``, unpacked from the store's archive when missing here."""
        if self.has_blob(sha256):
            return self.blob_dir(sha256)
        archive = self.store.local_path(archive_key)
        if not archive.is_file():
            raise FileNotFoundError(f"the archive {archive_key} is missing from the store")
        work = Path(tempfile.mkdtemp(prefix="blob-", dir=self.scratch))
        try:
            intake = unpack_model(archive, work / "unpacked", self.max_bytes)
            return self.install_blob(sha256, intake.root)
        finally:
            _remove_tree(work)

    def drop_blob(self, sha256: str) -> None:
        _remove_tree(self.blob_dir(sha256))

    # -- namespaces ----------------------------------------------------------------------
    def namespace_dir(self, namespace_id: str) -> Path:
        """``ns/<namespace_id>``, created with an empty index when missing (the folder a
        plugin process of the namespace sees)."""
        folder = self.namespaces / namespace_id
        # linked into place only where none exists: never over an index written meanwhile
        ensure_namespace_folder(folder)
        return folder

    def model_dir(self, namespace_id: str, model_id: str) -> Path:
        return self.namespaces / namespace_id / model_id

    def link(self, namespace_id: str, model_id: str, sha256: str) -> Path:
        """``ns/<namespace_id>/<model_id>`` as hard links to the blob's files (kept when it
        is already there)."""
        target = self.model_dir(namespace_id, model_id)
        if target.is_dir():
            return target
        blob = self.blob_dir(sha256)
        folder = self.namespace_dir(namespace_id)
        temp = Path(tempfile.mkdtemp(prefix=f".{model_id}-", dir=folder))
        try:
            _link_tree(blob, temp)
            _make_read_only(temp)
            os.rename(temp, target)
        except OSError:
            _remove_tree(temp)
            if not target.is_dir():
                raise
        return target

    def unlink(self, namespace_id: str, model_id: str) -> None:
        _remove_tree(self.model_dir(namespace_id, model_id))

    def prune(self, namespace_id: str, keep: set[str]) -> None:
        """Remove the namespace's model folders not in ``keep`` (and temp folders left by a
        crash); the index is written first, so no reader is pointed at them."""
        folder = self.namespaces / namespace_id
        if not folder.is_dir():
            return
        for child in folder.iterdir():
            if not child.is_dir() or child.name in keep:
                continue
            # a dot folder is a link in the making (another server process on this home
            # may be making it now): removed only once it is clearly left over from a crash
            if child.name.startswith(".") and time.time() - child.stat().st_mtime < _STALE_S:
                continue
            _remove_tree(child)

    def known_namespaces(self) -> list[str]:
        return sorted(p.name for p in self.namespaces.iterdir() if p.is_dir())

    def write_index(self, namespace_id: str, entries: Iterable[IndexEntry]) -> None:
        """Replace ``ns/<namespace_id>/index.json`` in one step."""
        folder = self.namespaces / namespace_id
        folder.mkdir(parents=True, exist_ok=True)
        body = {"models": {e.model_id: e.as_json() for e in sorted(entries, key=_by_id)}}
        fd, name = tempfile.mkstemp(prefix=".index-", suffix=".json", dir=folder)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(body, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(name, 0o444)
            os.replace(name, folder / "index.json")
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise

    def read_index(self, namespace_id: str) -> dict[str, dict[str, str | None]]:
        path = self.namespaces / namespace_id / "index.json"
        if not path.is_file():
            return {}
        models: dict[str, dict[str, str | None]] = json.loads(path.read_text())["models"]
        return models

    def preload(self, namespace_id: str, model_id: str) -> int:
        """Read every file of the model once, so the next replica maps it from the page
        cache; the bytes read."""
        total = 0
        for path in sorted(self.model_dir(namespace_id, model_id).rglob("*")):
            if path.is_file():
                with path.open("rb") as src:
                    while block := src.read(_READ_BLOCK):
                        total += len(block)
        return total


def _by_id(entry: IndexEntry) -> str:
    return entry.model_id


def _link_tree(source: Path, dest: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(source):
        rel = Path(dirpath).relative_to(source)
        for name in dirnames:
            (dest / rel / name).mkdir(mode=0o755)
        for name in filenames:
            os.link(Path(dirpath) / name, dest / rel / name)


def _make_read_only(root: Path) -> None:
    """Files 0444, folders 0555, the deepest first."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            os.chmod(Path(dirpath) / name, 0o444)
        os.chmod(dirpath, 0o555)


def _remove_tree(root: Path) -> None:
    """Remove a tree whose folders may be read-only (0555 cannot lose entries)."""
    if not root.exists() and not root.is_symlink():
        return
    if root.is_dir() and not root.is_symlink():
        for dirpath, _dirnames, _filenames in os.walk(root):
            mode = os.stat(dirpath).st_mode
            os.chmod(dirpath, stat.S_IMODE(mode) | stat.S_IWUSR | stat.S_IXUSR | stat.S_IRUSR)
        shutil.rmtree(root, ignore_errors=True)
    else:
        root.unlink(missing_ok=True)
