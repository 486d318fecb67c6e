"""Exceptions raised by plugin archive intake.

Every stage of intake raises a subclass of :class:`ArchiveError`; the exception carries the
complete list of human-readable problems that stage found, so a caller can report them all at
once instead of one per round trip.
"""

from __future__ import annotations

from collections.abc import Iterable


class ArchiveError(Exception):
    """An archive was refused; ``errors`` lists every reason, each a complete sentence."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors: list[str] = list(errors) or ["archive was refused"]
        super().__init__("; ".join(self.errors))


class UnsafeArchiveError(ArchiveError):
    """The archive could not be unpacked safely (format, paths, entry types or sizes)."""


class LayoutError(ArchiveError):
    """The unpacked files do not have the required plugin layout."""


class SecurityScanError(ArchiveError):
    """The static scan found forbidden code; each error is ``file:line:col message``."""


class ManifestError(ArchiveError):
    """manifest.py could not be read or does not describe a plugin."""
