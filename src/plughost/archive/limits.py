"""Bounds applied while taking in a plugin archive."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class IntakeLimits:
    """Upper bounds for one archive.

    ``max_compression_ratio`` applies to every zip entry (and to a whole gzip stream) that
    unpacks to more than :data:`RATIO_THRESHOLD_BYTES`; smaller entries are too small to hurt.
    """

    max_archive_bytes: int = 524_288_000
    max_entries: int = 1000
    max_unpacked_bytes: int = 524_288_000
    max_compression_ratio: float = 200.0
    max_py_file_bytes: int = 2_000_000
    manifest_timeout_s: float = 20.0


RATIO_THRESHOLD_BYTES = MIB
DEFAULT_LIMITS = IntakeLimits()
