"""Archive stores behind one small interface: local folder now, S3 later."""

from plughost.storage.base import ArchiveStore, StoredObject
from plughost.storage.local import LocalArchiveStore

__all__ = ["ArchiveStore", "LocalArchiveStore", "StoredObject"]
