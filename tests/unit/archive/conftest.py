"""Fixtures for the archive intake tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from plughost.archive import IntakeLimits


@pytest.fixture
def small_limits() -> IntakeLimits:
    """Limits small enough to trip in a unit test."""
    return IntakeLimits(
        max_archive_bytes=10 * 1024 * 1024,
        max_entries=20,
        max_unpacked_bytes=8 * 1024 * 1024,
        max_compression_ratio=50.0,
        max_py_file_bytes=10_000,
        manifest_timeout_s=10.0,
    )


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """An empty extraction folder."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder
