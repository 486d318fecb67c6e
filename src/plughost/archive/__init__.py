"""Plugin archive intake: safe unpacking, layout, static security scan, manifest reading.

Pure library code: no web framework, no database. Entry point :func:`validate_archive`.
"""

from plughost.archive.errors import (
    ArchiveError,
    LayoutError,
    ManifestError,
    SecurityScanError,
    UnsafeArchiveError,
)
from plughost.archive.hashing import code_hash
from plughost.archive.intake import IntakeResult, validate_archive
from plughost.archive.layout import find_plugin_root, has_realtime
from plughost.archive.limits import IntakeLimits
from plughost.archive.manifest_reader import MANIFEST_FIELDS, normalise_manifest, read_manifest
from plughost.archive.scanner import scan_source, scan_tree, scan_tree_isolated
from plughost.archive.unpack import ArchiveFormat, detect_format, unpack_archive

__all__ = [
    "MANIFEST_FIELDS",
    "ArchiveError",
    "ArchiveFormat",
    "IntakeLimits",
    "IntakeResult",
    "LayoutError",
    "ManifestError",
    "SecurityScanError",
    "UnsafeArchiveError",
    "code_hash",
    "detect_format",
    "find_plugin_root",
    "has_realtime",
    "normalise_manifest",
    "read_manifest",
    "scan_source",
    "scan_tree",
    "scan_tree_isolated",
    "unpack_archive",
    "validate_archive",
]
