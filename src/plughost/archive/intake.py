"""Plugin archive intake: unpack, check layout, scan, read the manifest, hash.

:func:`validate_archive` runs the stages in order and stops at the first that fails,
reporting all of that stage's errors. Both stages that read plugin code (the security scan
and the manifest) run in bounded child processes, never in the calling process. The code
hash and ``has_realtime`` are taken right after the layout check, before any plugin code
runs, so they describe exactly what was uploaded (a manifest cannot alter them) and are
reported even when a later stage fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plughost.archive.errors import ArchiveError, SecurityScanError
from plughost.archive.hashing import code_hash
from plughost.archive.layout import find_plugin_root, has_realtime
from plughost.archive.limits import DEFAULT_LIMITS, IntakeLimits
from plughost.archive.manifest_reader import read_manifest
from plughost.archive.scanner import scan_tree_isolated
from plughost.archive.unpack import unpack_archive


@dataclass
class IntakeResult:
    """Outcome of :func:`validate_archive`.

    ``passed`` is True only when every stage passed. ``plugin_root`` is set only then (on
    failure the unpacked files are deleted). ``code_hash`` and ``has_realtime`` are set as
    soon as the layout is known; ``manifest`` only when it was read; ``security_scan_passed``
    only when the scan ran and found nothing.
    """

    passed: bool
    errors: list[str] = field(default_factory=list)
    plugin_root: Path | None = None
    manifest: dict[str, Any] | None = None
    code_hash: str | None = None
    security_scan_passed: bool = False
    has_realtime: bool = False
    # the namespace model ids the code names as constants; None when the scan did not run
    model_refs: list[str] | None = None


def validate_archive(
    archive_path: Path, workdir: Path, limits: IntakeLimits = DEFAULT_LIMITS
) -> IntakeResult:
    """Take in one plugin archive; never raises for a bad archive, only for I/O failures.

    The archive is unpacked into a fresh ``intake-*`` folder under ``workdir`` (created if
    needed). On success the caller owns that folder (``plugin_root`` is inside it) and
    should delete it when done; on failure it has already been removed.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    extracted = Path(tempfile.mkdtemp(prefix="intake-", dir=workdir)).resolve()
    os.chmod(extracted, 0o755)
    result = IntakeResult(passed=False)
    try:
        _run_stages(archive_path, extracted, limits, result)
    except ArchiveError as exc:
        result.errors = exc.errors
        result.plugin_root = None
        shutil.rmtree(extracted, ignore_errors=True)
        return result
    except BaseException:
        shutil.rmtree(extracted, ignore_errors=True)
        raise
    result.passed = True
    return result


def _run_stages(
    archive_path: Path, extracted: Path, limits: IntakeLimits, result: IntakeResult
) -> None:
    """Fill ``result`` stage by stage; raise the first stage's ArchiveError."""
    unpack_archive(archive_path, extracted, limits)
    plugin_root = find_plugin_root(extracted)
    result.plugin_root = plugin_root
    result.code_hash = code_hash(plugin_root)
    result.has_realtime = has_realtime(plugin_root)
    refs: set[str] = set()
    findings = [] if limits.skip_scan else scan_tree_isolated(plugin_root, limits, refs)
    if findings:
        raise SecurityScanError(findings)
    result.security_scan_passed = True
    result.model_refs = None if limits.skip_scan else sorted(refs)
    result.manifest = read_manifest(plugin_root, limits)
