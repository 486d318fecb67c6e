"""Read a plugin's manifest.py in a separate, bounded Python process.

The manifest is plugin code, so it never runs in the service process. It runs in
``python -I -B _manifest_child.py <plugin_root> <runtime_api_dir>`` with the plugin root as working directory,
an environment holding only PATH and LANG, its own session (process group), a wall-clock
limit, and bounded output. ``-I`` keeps PYTHON* variables, the user site and the working
directory off the import path (the child needs only the standard library and whatever the
interpreter's site-packages hold, such as pydantic); ``-B`` keeps ``__pycache__`` out of the
plugin tree. The child's protocol is described in :mod:`plughost.archive._manifest_child`;
the raw fields it returns are checked and normalised here by :func:`normalise_manifest`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plughost.archive._child import ChildLabels, child_argv, child_environment, run_json_child
from plughost.archive._manifest_child import FIELDS
from plughost.archive._serve_config import merge_serve_config
from plughost.archive.errors import ManifestError
from plughost.archive.limits import IntakeLimits
from plughost.archive.manifest_features import normalise_compute_profile, normalise_features
from plughost.domain.serve_config import SERVE_CONFIG_KEYS, serving_errors
from plughost.runtime_api import RUNTIME_API_DIR

CHILD_SCRIPT = Path(__file__).with_name("_manifest_child.py")
_LABELS = ChildLabels(subject="manifest.py", output="manifest output", reader="manifest reader")

STRING_FIELDS = ("feature_extractor_name", "version", "description", "category", "feature_uri")
OBJECT_FIELDS = (
    "input_schema",
    "output_schema",
    "parameter_schema",
    "serve_config",
    "compute_profile",
    "input_mappings",
)
OBJECT_LIST_FIELDS = ("features", "required_vector_indexes", "cost_rates")
STRING_LIST_FIELDS = ("dependencies", "supported_input_types")
ANY_FIELDS = ("example_input",)
MANIFEST_FIELDS = FIELDS
"""Keys of a normalised manifest, in order; each maps to None when the manifest omits it."""


def read_manifest(plugin_root: Path, limits: IntakeLimits) -> dict[str, Any]:
    """Run manifest.py under ``plugin_root`` in a child process; return the normalised manifest.

    The result has every key of :data:`MANIFEST_FIELDS` (absent values are None). Its
    ``serve_config`` is the manifest's laid over the one realtime.py's service class declares
    as ``serve_config = ServeDeploymentConfig(...)`` (the manifest wins per key). Raises
    ManifestError when the manifest raises, runs too long, prints too much, or describes no
    plugin.
    """
    result = _run_child(plugin_root.resolve(), limits)
    if not result.get("ok"):
        raise ManifestError([str(result.get("error") or "manifest.py could not be read")])
    fields = result.get("fields")
    if not isinstance(fields, dict):
        raise ManifestError(["manifest reader returned no fields"])
    manifest = normalise_manifest(fields)
    class_config = _checked_class_config(result.get("class_serve_config"))
    manifest["serve_config"] = merge_serve_config(manifest["serve_config"], class_config)
    serving = serving_errors(manifest["serve_config"] or {})
    if serving:
        raise ManifestError(serving)
    return manifest


def _checked_class_config(raw: Any) -> dict[str, Any]:
    """The known keys with number or boolean values of the child's class serve_config."""
    if not isinstance(raw, dict):
        return {}
    return {
        key: value
        for key, value in raw.items()
        if key in SERVE_CONFIG_KEYS and isinstance(value, (bool, int, float))
    }


def normalise_manifest(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check the types of raw manifest fields and return them under every known key.

    Numbers given for string fields (``version = 1``) become strings; a plugin name is
    required. ``features`` gain the documented key names in either key style and
    ``compute_profile`` is checked (:mod:`plughost.archive.manifest_features`). Raises
    ManifestError listing every field of the wrong type.
    """
    manifest: dict[str, Any] = {key: raw.get(key) for key in MANIFEST_FIELDS}
    errors: list[str] = []
    for key in STRING_FIELDS:
        value = manifest[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            manifest[key] = str(value)
        elif value is not None and not isinstance(value, str):
            errors.append(_type_error(key, "a string", value))
    for key in OBJECT_FIELDS:
        if manifest[key] is not None and not isinstance(manifest[key], dict):
            errors.append(_type_error(key, "an object", manifest[key]))
    for key in OBJECT_LIST_FIELDS:
        errors.extend(_list_errors(key, manifest[key], dict, "a list of objects"))
    for key in STRING_LIST_FIELDS:
        errors.extend(_list_errors(key, manifest[key], str, "a list of strings"))
    if manifest["feature_extractor_name"] in (None, ""):
        errors.append("manifest.py does not name the plugin (feature_extractor_name or name)")
    if errors:
        raise ManifestError(errors)
    manifest["features"] = normalise_features(manifest["features"])
    manifest["compute_profile"], profile_errors = normalise_compute_profile(
        manifest["compute_profile"]
    )
    if profile_errors:
        raise ManifestError(profile_errors)
    return manifest


def _list_errors(key: str, value: Any, item_type: type, expected: str) -> list[str]:
    """At most one error: the value is not a list, or its first wrong item."""
    if value is None:
        return []
    if not isinstance(value, list):
        return [_type_error(key, expected, value)]
    for index, item in enumerate(value):
        if not isinstance(item, item_type):
            return [
                f"manifest field '{key}' must be {expected}; item {index} is {_json_type(item)}"
            ]
    return []


def _type_error(key: str, expected: str, value: Any) -> str:
    return f"manifest field '{key}' must be {expected}, not {_json_type(value)}"


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "a number" if isinstance(value, (int, float)) else "null"


def _run_child(plugin_root: Path, limits: IntakeLimits) -> dict[str, Any]:
    argv = child_argv(CHILD_SCRIPT, plugin_root, limits, str(RUNTIME_API_DIR))
    return run_json_child(
        argv,
        cwd=plugin_root,
        env=child_environment(),
        timeout_s=limits.manifest_timeout_s,
        labels=_LABELS,
        error=ManifestError,
    )
