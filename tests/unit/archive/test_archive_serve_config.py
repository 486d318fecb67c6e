"""A service class's ``serve_config = ServeDeploymentConfig(...)`` is read statically at
validation and merged under the manifest's serve_config (the manifest wins per key)."""

from __future__ import annotations

from pathlib import Path

from archive_builders import plugin_files, write_tar

from plughost.archive import IntakeLimits, validate_archive
from plughost.archive._serve_config import class_serve_config, merge_serve_config

REALTIME = """\
from shared.plugins.inference.serve import BaseInferenceService, ServeDeploymentConfig

WORKERS = 3

class SentimentRealtimeService(BaseInferenceService):
    serve_config = ServeDeploymentConfig(
        enabled=True, num_replicas=2, num_cpus=0.5, max_replicas=WORKERS, ray_options={}
    )

    async def _process_single(self, inputs, parameters):
        return {"label": "ok"}

__all__ = ["SentimentRealtimeService"]
"""


def test_literal_known_keywords_are_read_and_the_rest_ignored() -> None:
    assert class_serve_config(REALTIME) == {"enabled": True, "num_replicas": 2, "num_cpus": 0.5}


def test_annotated_and_module_qualified_forms_are_read() -> None:
    source = (
        "import shared.plugins.inference.serve as serve\n"
        "class A:\n"
        "    serve_config: serve.ServeDeploymentConfig = serve.ServeDeploymentConfig("
        "memory_gb=4)\n"
    )
    assert class_serve_config(source) == {"memory_gb": 4}


def test_the_class_all_names_wins_over_the_first_one() -> None:
    source = (
        "class First:\n    serve_config = ServeDeploymentConfig(num_replicas=1)\n"
        "class Second:\n    serve_config = ServeDeploymentConfig(num_replicas=5)\n"
        "__all__ = ['Second']\n"
    )
    assert class_serve_config(source) == {"num_replicas": 5}


def test_module_level_assignments_and_broken_sources_declare_nothing() -> None:
    assert class_serve_config("serve_config = ServeDeploymentConfig(num_replicas=4)\n") == {}
    assert class_serve_config("class A(:\n") == {}
    assert class_serve_config("class A:\n    serve_config = dict(num_replicas=2)\n") == {}


def test_manifest_wins_per_key_and_absence_stays_none() -> None:
    merged = merge_serve_config({"num_replicas": 1}, {"num_replicas": 2, "num_cpus": 1})
    assert merged == {"num_replicas": 1, "num_cpus": 1}
    assert merge_serve_config(None, {}) is None
    assert merge_serve_config({}, {}) == {}
    assert merge_serve_config(None, {"memory_gb": 2}) == {"memory_gb": 2}


def test_validation_stores_the_class_serve_config_under_the_manifests(tmp_path: Path) -> None:
    manifest = (
        "feature_extractor_name = 'sentiment'\nversion = 'v1'\n"
        "serve_config = {'num_replicas': 1, 'memory_gb': 3}\n"
    )
    files = plugin_files({"manifest.py": manifest, "realtime.py": REALTIME})
    path = write_tar(tmp_path / "upload.tar.gz", files, "sentiment/")

    result = validate_archive(path, tmp_path / "work", IntakeLimits(manifest_timeout_s=15.0))

    assert result.errors == []
    assert result.manifest is not None
    assert result.manifest["serve_config"] == {
        "enabled": True,
        "num_replicas": 1,
        "num_cpus": 0.5,
        "memory_gb": 3,
    }
