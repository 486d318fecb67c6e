"""Bounds applied while taking in a plugin archive."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024


@dataclass(frozen=True)
class IntakeLimits:
    """Upper bounds for one archive.

    ``max_compression_ratio`` applies to every zip entry (and to a whole gzip stream) that
    unpacks to more than :data:`RATIO_THRESHOLD_BYTES`; smaller entries are too small to hurt.
    The security scan parses every ``.py`` file in a child process limited to
    ``scan_memory_bytes`` of address space and ``scan_timeout_s`` of wall-clock time.
    """

    max_archive_bytes: int = 524_288_000
    max_entries: int = 1000
    max_unpacked_bytes: int = 524_288_000
    max_compression_ratio: float = 200.0
    max_py_file_bytes: int = 2_000_000
    manifest_timeout_s: float = 20.0
    # Hooks set by the server (plughost.sandbox): the argv that runs the manifest reader
    # script on a plugin root (None: plain ``python -I -B``), and skipping the scanner
    # (PLUGHOST_UNSAFE_SKIP_SCAN, tests of the sandbox only).
    manifest_command: Callable[[Path, Path], list[str]] | None = None
    skip_scan: bool = False
    scan_timeout_s: float = 60.0
    scan_memory_bytes: int = 1024 * MIB


RATIO_THRESHOLD_BYTES = MIB
DEFAULT_LIMITS = IntakeLimits()
