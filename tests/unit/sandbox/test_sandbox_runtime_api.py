"""The runtime API folder inside the sandbox: visible, importable, read-only; and the
manifest reader hands it to its child through the sandbox hook."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from plughost.archive import IntakeLimits
from plughost.archive.manifest_reader import read_manifest
from plughost.runtime_api import RUNTIME_API_DIR
from plughost.sandbox.bwrap import MountPlan, bwrap_command, plughost_root, runtime_paths

BWRAP = Path("/usr/bin/bwrap")

PROBE = f"""
import errno, sys
sys.path.append({str(RUNTIME_API_DIR)!r})
import engine.plugins.extractors.pipeline, shared.plugins.inference.serve
import shared.plugins.sdk, shared.utilities.files
try:
    open({str(RUNTIME_API_DIR / "probe.txt")!r}, "w")
except OSError as exc:
    print("read-only" if exc.errno in (errno.EROFS, errno.EACCES) else exc)
"""


def test_runtime_api_folder_is_inside_the_paths_a_sandbox_binds() -> None:
    paths = runtime_paths([plughost_root()])
    assert any(RUNTIME_API_DIR.is_relative_to(path) for path in paths)


@pytest.mark.skipif(not BWRAP.exists(), reason="bubblewrap is not installed")
def test_runtime_api_imports_in_bwrap_and_cannot_be_written(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    plan = MountPlan(plugin_dir=tmp_path, runtime_paths=runtime_paths([plughost_root()]))
    argv = [*bwrap_command(str(BWRAP), plan), sys.executable, "-I", "-c", PROBE]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "bwrap" in done.stderr:
        pytest.skip(f"bubblewrap cannot run here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "read-only"


def test_manifest_child_gets_the_runtime_api_folder_through_the_sandbox_hook(
    tmp_path: Path,
) -> None:
    calls: list[tuple[Path, Path]] = []

    def hook(script: Path, plugin_root: Path) -> list[str]:
        calls.append((script, plugin_root))
        return [sys.executable, "-I", "-B", str(script), str(plugin_root)]

    (tmp_path / "manifest.py").write_text(
        "from engine.plugins.extractors.pipeline import ResourceType\n"
        "feature_extractor_name = 'hooked'\nversion = ResourceType.GPU.value\n"
    )
    manifest = read_manifest(tmp_path, IntakeLimits(manifest_command=hook))
    assert len(calls) == 1
    assert (manifest["feature_extractor_name"], manifest["version"]) == ("hooked", "gpu")
