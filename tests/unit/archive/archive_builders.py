"""Builders for plugin archives used by the archive intake tests (imported by them)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

PIPELINE_SOURCE = """\
def build_steps(extractor_request, container=None, base_steps=None, dataset_size=None,
                content_flags=None):
    return {"steps": [], "prepare": None}
"""

ATTRIBUTE_MANIFEST = """\
feature_extractor_name = "demo_plugin"
version = "1.0.0"
description = "A demo plugin"
dependencies = ["numpy>=1.26"]
features = [{"feature_name": "embedding", "feature_type": "vector", "dimensions": 3}]
output_schema = {"type": "object", "properties": {"embedding": {"type": "array"}}}
"""

Files = Mapping[str, bytes | str]
TarMode = Literal["w", "w:gz"]


def plugin_files(
    overrides: Files | None = None, *, without: tuple[str, ...] = ()
) -> dict[str, bytes | str]:
    """A minimal valid plugin, with files replaced or added by ``overrides``."""
    files: dict[str, bytes | str] = {
        "manifest.py": ATTRIBUTE_MANIFEST,
        "pipeline.py": PIPELINE_SOURCE,
        "processors/__init__.py": "",
        "processors/core.py": "def run(frame):\n    return frame\n",
    }
    files.update(overrides or {})
    for name in without:
        del files[name]
    return files


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def write_zip(path: Path, files: Files, prefix: str = "") -> Path:
    """Write ``files`` (relative name -> content) as a deflated zip, names under ``prefix``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(prefix + name, _as_bytes(data))
    return path


def write_tar(path: Path, files: Files, prefix: str = "", mode: TarMode = "w:gz") -> Path:
    """Write ``files`` as a tar archive (``w:gz`` or plain ``w``), names under ``prefix``."""
    with tarfile.open(path, mode) as archive:
        for name, data in files.items():
            payload = _as_bytes(data)
            info = tarfile.TarInfo(prefix + name)
            info.size = len(payload)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(payload))
    return path


def write_raw_tar(
    path: Path, members: Sequence[tuple[tarfile.TarInfo, bytes | None]], mode: TarMode = "w:gz"
) -> Path:
    """Write hand-made tar members (links, devices...) exactly as given."""
    with tarfile.open(path, mode) as archive:
        for info, data in members:
            if data is None:
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path
