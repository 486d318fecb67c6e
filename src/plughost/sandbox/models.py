"""What a plugin process sees of the namespace models and of the Hugging Face cache.

Every process that runs plugin code (local replica, batch worker, Ray Serve replica, Ray Data
worker) gets its namespace's model folder, ``<models_cache_dir>/ns/<namespace_id>`` (laid
out by :mod:`plughost.services.model_files`: ``index.json`` and one folder of hard links per
model), and nothing else of the models cache:

- in bubblewrap, bound read-only at :data:`MODELS_MOUNT`; the shared Hugging Face cache
  (``PLUGHOST_HF_CACHE``), when the server has one, read-only at :data:`HF_MOUNT`;
- without bubblewrap (sandbox off, or a machine without it), at their real paths.

The environment says where: ``PLUGHOST_MODELS_DIR``, and with a cache ``PLUGHOST_HF_CACHE``
plus ``HF_HUB_CACHE`` (so ``from_pretrained(<hub id>)`` finds it too) and ``HF_HUB_OFFLINE``.

The folder is created (with an empty index) when the namespace has none yet, so a bind never
fails and a plugin asking for a model gets "not in this namespace" rather than a start error.
On a Ray cluster of several machines this path must be the same shared folder on every node
(a network file system mounted at the same place): each node binds what it finds there.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

MODELS_MOUNT = "/plughost/models"
HF_MOUNT = "/plughost/hf-cache"
MOUNT_PARENT = "/plughost"
MODELS_DIR_ENV = "PLUGHOST_MODELS_DIR"
HF_CACHE_ENV = "PLUGHOST_HF_CACHE"
EMPTY_INDEX = b'{"models": {}}\n'
_SAFE_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class ModelShare:
    """Where this machine keeps namespace model folders (``models_root``: the ``ns`` folder
    of the models cache) and the shared Hugging Face cache (``hf_cache``), either None."""

    models_root: Path | None = None
    hf_cache: Path | None = None

    def folder(self, namespace_id: str | None) -> Path | None:
        """The namespace's model folder, created with an empty index if missing (None
        without a models root, a namespace, or when it cannot be made)."""
        if self.models_root is None or not namespace_id:
            return None
        if not _SAFE_NAMESPACE.fullmatch(namespace_id) or namespace_id in (".", ".."):
            return None
        folder = self.models_root / namespace_id
        try:
            ensure_namespace_folder(folder)
        except OSError:
            return None
        return folder

    def hf_folder(self) -> Path | None:
        return self.hf_cache if self.hf_cache is not None and self.hf_cache.is_dir() else None

    def binds(self, namespace_id: str | None) -> list[str]:
        """bubblewrap arguments binding the folders read-only at their mount points."""
        args: list[str] = []
        folder = self.folder(namespace_id)
        hf = self.hf_folder()
        if folder is None and hf is None:
            return args
        args += ["--perms", "0755", "--dir", MOUNT_PARENT]
        if folder is not None:
            args += ["--ro-bind", str(folder), MODELS_MOUNT]
        if hf is not None:
            args += ["--ro-bind", str(hf), HF_MOUNT]
        return args

    def slot_binds(self, folder: Path) -> list[str]:
        """bubblewrap arguments of a replica pool member (plughost.backends.local.pool):
        ``folder`` (the slot's, empty until a claim fills it with a namespace's models) at
        the models mount when this machine has namespace models, and the shared Hugging Face
        cache, which every namespace sees alike."""
        hf = self.hf_folder()
        if self.models_root is None and hf is None:
            return []
        args = ["--perms", "0755", "--dir", MOUNT_PARENT]
        if self.models_root is not None:
            args += ["--ro-bind", str(folder), MODELS_MOUNT]
        if hf is not None:
            args += ["--ro-bind", str(hf), HF_MOUNT]
        return args

    def env(self, namespace_id: str | None, wrapped: bool) -> dict[str, str]:
        """The variables naming the folders as the process sees them (``wrapped``: inside
        bubblewrap, at the mount points)."""
        env: dict[str, str] = {}
        folder = self.folder(namespace_id)
        if folder is not None:
            env[MODELS_DIR_ENV] = MODELS_MOUNT if wrapped else str(folder)
        hf = self.hf_folder()
        if hf is not None:
            seen = HF_MOUNT if wrapped else str(hf)
            env.update({HF_CACHE_ENV: seen, "HF_HUB_CACHE": seen, "HF_HUB_OFFLINE": "1"})
        return env


def ensure_namespace_folder(folder: Path) -> None:
    """``folder`` (0755) with an ``index.json`` listing no model unless one exists: created
    beside it and linked into place, so an index the server writes meanwhile is never
    replaced."""
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    index = folder / "index.json"
    if index.exists():
        return
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".index-", suffix=".tmp")
    try:
        try:
            os.write(fd, EMPTY_INDEX)
            os.fchmod(fd, 0o644)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, index)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
