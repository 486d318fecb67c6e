"""A manifest that imports Mixpeek's runtime API passes validation: the manifest child, which
reads it in a separate process, sees the runtime API that replicas see."""

from __future__ import annotations

from pathlib import Path

import pytest
from archive_builders import plugin_files, write_tar, write_zip

from plughost.archive import IntakeLimits, validate_archive

LIMITS = IntakeLimits(manifest_timeout_s=15.0)

RUNTIME_MANIFEST = """\
from shared.plugins.inference.serve import BaseInferenceService, ServeDeploymentConfig
from engine.plugins.extractors.pipeline import ResourceType, RowCondition, StepDefinition

feature_extractor_name = "runtime_manifest"
version = "v1"
description = "imports the plugin runtime API"
dependencies = []
features = [{"feature_type": "text", "feature_name": "label"}]
output_schema = {"type": "object", "properties": {"label": {"type": "string"}}}
DEFAULT_RESOURCE = ResourceType.CPU
TEXT_ONLY = RowCondition.IS_TEXT
SERVE = ServeDeploymentConfig(num_replicas=1)
assert issubclass(BaseInferenceService, object) and StepDefinition is not None
"""


@pytest.mark.parametrize(("kind", "prefix"), [("tar.gz", "runtime_manifest/"), ("zip", "")])
def test_manifest_importing_the_runtime_api_passes(tmp_path: Path, kind: str, prefix: str) -> None:
    files = plugin_files({"manifest.py": RUNTIME_MANIFEST})
    path = tmp_path / "upload.bin"
    if kind == "zip":
        write_zip(path, files, prefix)
    else:
        write_tar(path, files, prefix)

    result = validate_archive(path, tmp_path / "work", LIMITS)

    assert result.errors == []
    assert result.passed is True
    assert result.manifest is not None
    assert result.manifest["feature_extractor_name"] == "runtime_manifest"


def test_manifest_importing_a_missing_runtime_name_still_fails(tmp_path: Path) -> None:
    manifest = "from shared.plugins.inference.serve import NoSuchName\nversion = 'v1'\n"
    path = write_zip(tmp_path / "upload.zip", plugin_files({"manifest.py": manifest}))

    result = validate_archive(path, tmp_path / "work", LIMITS)

    assert result.passed is False
    assert any("NoSuchName" in e for e in result.errors), result.errors
