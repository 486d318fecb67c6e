"""Fixtures for the worker unit tests: plugin folders on disk and import isolation."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PluginWriter = Callable[[dict[str, str]], Path]


@pytest.fixture
def isolated_imports() -> Iterator[None]:
    """Undo the sys.path entries and modules a plugin load adds (plugins share names)."""
    saved_path = list(sys.path)
    saved_modules = set(sys.modules)
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules:
            del sys.modules[name]
        importlib.invalidate_caches()


@pytest.fixture
def write_plugin(tmp_path: Path, isolated_imports: None) -> PluginWriter:
    """Write ``{relative path: source}`` into a fresh plugin folder and return the folder."""
    counter = iter(range(1_000_000))

    def write(files: dict[str, str]) -> Path:
        root = tmp_path / f"plugin{next(counter)}"
        for relative, source in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
        return root

    return write
