"""Reading manifest.py in a bounded child process, and normalising what it declares."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from archive_builders import ATTRIBUTE_MANIFEST

from plughost.archive import (
    MANIFEST_FIELDS,
    IntakeLimits,
    ManifestError,
    normalise_manifest,
    read_manifest,
)

LIMITS = IntakeLimits(manifest_timeout_s=15.0)

METADATA_MANIFEST = """\
from pydantic import BaseModel, Field

from processors.schemas import Output


class Input(BaseModel):
    text: str = Field(description="Text to embed")


class Parameters(BaseModel):
    normalize: bool = True


metadata = {
    "name": "text_embed",
    "version": "v1",
    "description": "Embeds text",
    "category": "text",
}
input_schema = Input
output_schema = Output
parameter_schema = Parameters
features = [{"feature_name": "embedding", "dimensions": 384}]
supported_input_types = ("text",)
serve_config = {"num_replicas": 1, "num_cpus": 1.0, "memory_gb": 2}
compute_profile = {"resource_type": "cpu"}
example_input = {"text": "hello"}
dependencies = ["sentence-transformers"]
"""

SCHEMAS_MODULE = """\
from pydantic import BaseModel


class Output(BaseModel):
    embedding: list[float]
"""


def plugin(tmp_path: Path, manifest: str, extra: dict[str, str] | None = None) -> Path:
    root = tmp_path / "plugin"
    root.mkdir(exist_ok=True)
    (root / "manifest.py").write_text(manifest)
    for name, text in (extra or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def manifest_errors(root: Path, limits: IntakeLimits = LIMITS) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        read_manifest(root, limits)
    return caught.value.errors


# --- the two styles --------------------------------------------------------------------


def test_module_attribute_style_is_read(tmp_path: Path) -> None:
    manifest = read_manifest(plugin(tmp_path, ATTRIBUTE_MANIFEST), LIMITS)

    assert list(manifest) == list(MANIFEST_FIELDS)
    assert manifest["feature_extractor_name"] == "demo_plugin"
    assert manifest["version"] == "1.0.0"
    assert manifest["description"] == "A demo plugin"
    assert manifest["dependencies"] == ["numpy>=1.26"]
    assert manifest["features"] == [
        {"feature_name": "embedding", "feature_type": "vector", "dimensions": 3, "embedding_dim": 3}
    ]
    assert manifest["output_schema"]["properties"] == {"embedding": {"type": "array"}}
    assert manifest["input_schema"] is None
    assert manifest["serve_config"] is None


def test_metadata_style_with_pydantic_classes_is_read(tmp_path: Path) -> None:
    extra = {"processors/__init__.py": "", "processors/schemas.py": SCHEMAS_MODULE}
    root = plugin(tmp_path, METADATA_MANIFEST, extra)

    manifest = read_manifest(root, LIMITS)

    assert manifest["feature_extractor_name"] == "text_embed"
    assert manifest["version"] == "v1"
    assert manifest["category"] == "text"
    assert manifest["input_schema"]["title"] == "Input"
    assert manifest["input_schema"]["properties"]["text"]["type"] == "string"
    assert manifest["input_schema"]["required"] == ["text"]
    assert manifest["output_schema"]["properties"]["embedding"]["type"] == "array"
    assert manifest["parameter_schema"]["properties"]["normalize"]["default"] is True
    assert manifest["supported_input_types"] == ["text"]
    assert manifest["serve_config"] == {"num_replicas": 1, "num_cpus": 1.0, "memory_gb": 2}
    assert manifest["compute_profile"] == {"resource_type": "cpu"}
    assert manifest["example_input"] == {"text": "hello"}
    assert manifest["dependencies"] == ["sentence-transformers"]
    assert manifest["features"] == [
        {"feature_name": "embedding", "dimensions": 384, "embedding_dim": 384}
    ]
    json.dumps(manifest)  # everything is plain JSON


def test_metadata_may_use_feature_extractor_name_and_hold_schemas(tmp_path: Path) -> None:
    source = (
        "metadata = {'feature_extractor_name': 'meta_named', 'version': 2,\n"
        "            'output_schema': {'type': 'object'}}\n"
    )

    manifest = read_manifest(plugin(tmp_path, source), LIMITS)

    assert manifest["feature_extractor_name"] == "meta_named"
    assert manifest["version"] == "2"
    assert manifest["output_schema"] == {"type": "object"}


def test_non_json_values_are_converted(tmp_path: Path) -> None:
    source = (
        "import datetime, enum\n"
        "class Kind(enum.Enum):\n"
        "    TEXT = 'text'\n"
        "feature_extractor_name = 'conv'\n"
        "version = 1.5\n"
        "features = [{'name': 'f', 'dtype': float, 'shape': (1, 3), 'kind': Kind.TEXT}]\n"
        "example_input = {'when': datetime.date(2024, 1, 2), 'nan': float('nan'), 3: {1, 2}}\n"
    )

    manifest = read_manifest(plugin(tmp_path, source), LIMITS)

    assert manifest["version"] == "1.5"
    assert manifest["features"] == [
        {"name": "f", "dtype": "float", "shape": [1, 3], "kind": "text", "feature_name": "f"}
    ]
    assert manifest["example_input"] == {"when": "2024-01-02", "nan": None, "3": [1, 2]}


# --- failures --------------------------------------------------------------------------


def test_exception_in_manifest_is_reported(tmp_path: Path) -> None:
    root = plugin(tmp_path, "feature_extractor_name = 'x'\nraise ValueError('boom')\n")

    assert manifest_errors(root) == ["manifest.py raised ValueError: boom"]


def test_system_exit_in_manifest_is_reported(tmp_path: Path) -> None:
    root = plugin(tmp_path, "import sys\nsys.exit(3)\n")

    assert manifest_errors(root) == ["manifest.py raised SystemExit: 3"]


def test_failed_import_in_manifest_is_reported(tmp_path: Path) -> None:
    root = plugin(tmp_path, "import not_a_real_module_xyz\n")

    assert manifest_errors(root) == [
        "manifest.py raised ModuleNotFoundError: No module named 'not_a_real_module_xyz'"
    ]


def test_manifest_with_neither_style_is_refused(tmp_path: Path) -> None:
    root = plugin(tmp_path, "name = 'x'\nversion = '1'\n")

    assert manifest_errors(root) == [
        "manifest.py defines neither feature_extractor_name nor a metadata dict"
    ]


def test_metadata_without_a_name_is_refused(tmp_path: Path) -> None:
    root = plugin(tmp_path, "metadata = {'version': '1.0.0'}\n")

    assert manifest_errors(root) == [
        "manifest.py does not name the plugin (feature_extractor_name or name)"
    ]


def test_wrong_field_types_are_all_reported(tmp_path: Path) -> None:
    source = (
        "feature_extractor_name = 'typed'\n"
        "dependencies = 'numpy'\n"
        "features = ['embedding']\n"
        "output_schema = ['not', 'a', 'dict']\n"
    )

    assert manifest_errors(plugin(tmp_path, source)) == [
        "manifest field 'output_schema' must be an object, not a list",
        "manifest field 'features' must be a list of objects; item 0 is a string",
        "manifest field 'dependencies' must be a list of strings, not a string",
    ]


def test_endless_manifest_is_stopped(tmp_path: Path) -> None:
    root = plugin(tmp_path, "while True:\n    pass\n")

    # it never ends on its own: an answer at all means it was stopped
    errors = manifest_errors(root, IntakeLimits(manifest_timeout_s=2.0))

    assert errors == ["manifest.py did not finish within 2 s"]


def test_manifest_that_closes_its_output_but_keeps_running_is_stopped(tmp_path: Path) -> None:
    # an hour, past the suite's per-test timeout: a reader that waited for the process to
    # end instead of stopping it at its own timeout would never answer
    source = "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(3600)\n"

    errors = manifest_errors(plugin(tmp_path, source), IntakeLimits(manifest_timeout_s=1.5))

    assert errors == ["manifest.py did not finish within 1.5 s"]


def test_output_printed_by_the_manifest_does_not_confuse_the_reader(tmp_path: Path) -> None:
    source = (
        "import sys\n"
        'print(\'{"ok": false, "error": "forged"}\')\n'
        "print('noise ' * 200_000)\n"
        "sys.stderr.write('more noise\\n' * 100_000)\n"
        + ATTRIBUTE_MANIFEST
        + "print('trailing junk', end='')\n"
    )

    manifest = read_manifest(plugin(tmp_path, source), LIMITS)

    assert manifest["feature_extractor_name"] == "demo_plugin"


def test_crash_without_result_is_reported(tmp_path: Path) -> None:
    root = plugin(tmp_path, "import os, sys\nsys.stderr.write('dying now\\n')\nos._exit(7)\n")

    assert manifest_errors(root) == [
        "manifest reader stopped without a result (exit code 7): dying now"
    ]


# --- isolation -------------------------------------------------------------------------


def test_child_gets_a_scrubbed_environment_and_the_plugin_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLUGHOST_SECRET_TOKEN", "hunter2")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "elsewhere"))
    source = (
        "import os, sys\n"
        "feature_extractor_name = 'env'\n"
        "dependencies = sorted(os.environ)\n"
        "description = os.getcwd()\n"
        "supported_input_types = list(sys.path)\n"
    )
    root = plugin(tmp_path, source)

    manifest = read_manifest(root, LIMITS)

    names = set(manifest["dependencies"])
    assert "PLUGHOST_SECRET_TOKEN" not in names
    assert "PYTHONPATH" not in names
    assert "PATH" in names
    assert names <= {"PATH", "LANG", "LC_CTYPE"}  # Python may coerce the C locale itself
    assert manifest["description"] == str(root.resolve())
    assert manifest["supported_input_types"][0] == str(root.resolve())
    assert str(tmp_path / "elsewhere") not in manifest["supported_input_types"]


def test_plugin_modules_import_by_top_level_name_and_leave_no_bytecode(tmp_path: Path) -> None:
    source = "from processors.names import NAME\nfeature_extractor_name = NAME\n"
    extra = {"processors/__init__.py": "", "processors/names.py": "NAME = 'from_module'\n"}
    root = plugin(tmp_path, source, extra)

    manifest = read_manifest(root, LIMITS)

    assert manifest["feature_extractor_name"] == "from_module"
    assert not list(root.rglob("__pycache__"))


def test_processes_left_behind_by_the_manifest_are_killed(tmp_path: Path) -> None:
    source = (
        "import subprocess\n"
        "child = subprocess.Popen(['sleep', '60'], stdout=subprocess.DEVNULL,\n"
        "                         stderr=subprocess.DEVNULL)\n"
        "feature_extractor_name = 'spawner'\n"
        "description = str(child.pid)\n"
    )

    manifest = read_manifest(plugin(tmp_path, source), LIMITS)

    pid = int(manifest["description"])
    assert _gone_within(pid, seconds=5.0)


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


# --- normalise_manifest ----------------------------------------------------------------


def test_normalise_fills_every_key() -> None:
    manifest = normalise_manifest({"feature_extractor_name": "x", "unknown": 1})

    assert list(manifest) == list(MANIFEST_FIELDS)
    assert "unknown" not in manifest
    assert all(manifest[key] is None for key in MANIFEST_FIELDS[1:])


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"version": True}, "manifest field 'version' must be a string, not a boolean"),
        ({"serve_config": 3}, "manifest field 'serve_config' must be an object, not a number"),
        (
            {"cost_rates": {"unit": "minute"}},
            "manifest field 'cost_rates' must be a list of objects, not an object",
        ),
        (
            {"required_vector_indexes": ["idx"]},
            "manifest field 'required_vector_indexes' must be a list of objects; item 0 is a string",
        ),
        (
            {"supported_input_types": [1]},
            "manifest field 'supported_input_types' must be a list of strings; item 0 is a number",
        ),
    ],
)
def test_normalise_rejects_wrong_types(raw: dict[str, Any], error: str) -> None:
    with pytest.raises(ManifestError) as caught:
        normalise_manifest({"feature_extractor_name": "x", **raw})

    assert caught.value.errors == [error]


# --- features in both key styles, compute_profile ---------------------------------------


def test_documented_feature_keys_are_kept_as_given() -> None:
    documented = {
        "feature_type": "embedding",
        "feature_name": "my_embedding",
        "embedding_dim": 384,
        "distance_metric": "cosine",
    }

    manifest = normalise_manifest({"feature_extractor_name": "x", "features": [documented]})

    assert manifest["features"] == [documented]


def test_short_feature_keys_gain_the_documented_names() -> None:
    short = {"type": "vector", "name": "my_embedding", "dimensions": 768, "distance": "Cosine"}

    manifest = normalise_manifest({"feature_extractor_name": "x", "features": [short]})

    assert manifest["features"] == [
        {
            **short,
            "feature_type": "embedding",
            "feature_name": "my_embedding",
            "embedding_dim": 768,
            "distance_metric": "cosine",
        }
    ]


def test_a_non_vector_short_type_is_carried_over_unchanged() -> None:
    manifest = normalise_manifest(
        {"feature_extractor_name": "x", "features": [{"type": "text", "name": "label"}]}
    )

    assert manifest["features"][0]["feature_type"] == "text"
    assert manifest["features"][0]["feature_name"] == "label"


def test_both_feature_styles_read_from_a_manifest_reach_the_sdk_model(tmp_path: Path) -> None:
    from mixpeek.models.api_namespaces_plugins_models_plugin_manifest_metadata import (
        ApiNamespacesPluginsModelsPluginManifestMetadata as Metadata,
    )

    source = (
        "feature_extractor_name = 'two_styles'\n"
        "version = '1.0.0'\n"
        "features = [\n"
        "    {'feature_type': 'embedding', 'feature_name': 'a', 'embedding_dim': 4,\n"
        "     'distance_metric': 'cosine'},\n"
        "    {'type': 'vector', 'name': 'b', 'dimensions': 8, 'distance': 'dot'},\n"
        "]\n"
        "compute_profile = {'resource_type': 'CPU', 'batch_size': 32, 'max_concurrency': 4,\n"
        "                   'actor_memory_gb': 2.0}\n"
    )

    manifest = read_manifest(plugin(tmp_path, source), LIMITS)

    by_name = {f["feature_name"]: f for f in manifest["features"]}
    assert by_name["a"]["embedding_dim"] == 4 and by_name["b"]["embedding_dim"] == 8
    assert by_name["b"]["distance_metric"] == "dot"
    assert manifest["compute_profile"] == {
        "resource_type": "cpu",
        "batch_size": 32,
        "max_concurrency": 4,
        "actor_memory_gb": 2.0,
    }
    parsed = Metadata.from_dict({k: manifest[k] for k in ("features", "compute_profile")})
    assert parsed is not None and parsed.features == manifest["features"]


@pytest.mark.parametrize(
    ("profile", "error"),
    [
        (
            {"resource_type": "tpu"},
            "compute_profile.resource_type must be one of cpu, gpu, api, not 'tpu'",
        ),
        ({"batch_size": 0}, "compute_profile.batch_size must be a positive integer, not 0"),
        (
            {"max_concurrency": 2.5},
            "compute_profile.max_concurrency must be a positive integer, not 2.5",
        ),
        ({"batch_size": "64"}, "compute_profile.batch_size must be a positive integer, not '64'"),
        (
            {"actor_memory_gb": -1},
            "compute_profile.actor_memory_gb must be a positive number, not -1",
        ),
    ],
)
def test_unusable_compute_profile_values_are_refused(profile: dict[str, Any], error: str) -> None:
    with pytest.raises(ManifestError) as caught:
        normalise_manifest({"feature_extractor_name": "x", "compute_profile": profile})

    assert caught.value.errors == [error]


def test_compute_profile_keeps_unknown_keys_and_whole_floats_become_integers() -> None:
    profile = {"resource_type": "gpu", "batch_size": 16.0, "gpu_memory_gb": 8, "note": "x"}

    manifest = normalise_manifest({"feature_extractor_name": "x", "compute_profile": profile})

    assert manifest["compute_profile"] == {
        "resource_type": "gpu",
        "batch_size": 16,
        "gpu_memory_gb": 8,
        "note": "x",
    }


def test_manifest_may_use_relative_imports_without_running_the_package_init(tmp_path: Path) -> None:
    source = (
        "from .schemas import Params\n"
        "from . import constants\n"
        "feature_extractor_name = constants.NAME\n"
        "version = '1.0.0'\n"
        "parameter_schema = Params\n"
    )
    extra = {
        "schemas.py": "from pydantic import BaseModel\n\nclass Params(BaseModel):\n    k: int = 3\n",
        "constants.py": "NAME = 'relative_manifest'\n",
        "__init__.py": "raise RuntimeError('the package body is not the manifest's business')\n",
    }

    manifest = read_manifest(plugin(tmp_path, source, extra), LIMITS)

    assert manifest["feature_extractor_name"] == "relative_manifest"
    assert manifest["parameter_schema"]["properties"]["k"]["default"] == 3
