"""Read a plugin's manifest.py in a separate, bounded Python process.

The manifest is plugin code, so it never runs in the service process. It runs in
``python -I -B _manifest_child.py <plugin_root>`` with the plugin root as working directory,
an environment holding only PATH and LANG, its own session (process group), a wall-clock
limit, and bounded output. ``-I`` keeps PYTHON* variables, the user site and the working
directory off the import path (the child needs only the standard library and whatever the
interpreter's site-packages hold, such as pydantic); ``-B`` keeps ``__pycache__`` out of the
plugin tree. The child's protocol is described in :mod:`plughost.archive._manifest_child`;
the raw fields it returns are checked and normalised here by :func:`normalise_manifest`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plughost.archive._child import ChildLabels, run_json_child
from plughost.archive._manifest_child import FIELDS
from plughost.archive.errors import ManifestError
from plughost.archive.limits import IntakeLimits

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

    The result has every key of :data:`MANIFEST_FIELDS` (absent values are None). Raises
    ManifestError when the manifest raises, runs too long, prints too much, or describes no
    plugin.
    """
    result = _run_child(plugin_root.resolve(), limits)
    if not result.get("ok"):
        raise ManifestError([str(result.get("error") or "manifest.py could not be read")])
    fields = result.get("fields")
    if not isinstance(fields, dict):
        raise ManifestError(["manifest reader returned no fields"])
    return normalise_manifest(fields)


def normalise_manifest(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check the types of raw manifest fields and return them under every known key.

    Numbers given for string fields (``version = 1``) become strings; a plugin name is
    required. Raises ManifestError listing every field of the wrong type.
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
    return manifest


def child_environment(parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for the child: PATH and LANG from ``parent`` (default: this process)."""
    source = os.environ if parent is None else parent
    return {
        "PATH": source.get("PATH", os.defpath),
        "LANG": source.get("LANG", "C.UTF-8"),
    }


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


def child_argv(script: Path, plugin_root: Path, limits: IntakeLimits, *args: str) -> list[str]:
    """Command line that runs an intake child script (stdlib only) on ``plugin_root``.

    Every intake child (this manifest reader and the security scan) is started through this
    one function: through the server's sandbox hook ``limits.manifest_command`` when set
    (the hook's argv ends with the script and the plugin root; ``args`` follow them), else
    as ``python -I -B script plugin_root args...``.
    """
    if limits.manifest_command is not None:  # the server's sandbox wraps the child
        return [*limits.manifest_command(script, plugin_root), *args]
    return [sys.executable, "-I", "-B", str(script), str(plugin_root), *args]


def _run_child(plugin_root: Path, limits: IntakeLimits) -> dict[str, Any]:
    argv = child_argv(CHILD_SCRIPT, plugin_root, limits)
    return run_json_child(
        argv,
        cwd=plugin_root,
        env=child_environment(),
        timeout_s=limits.manifest_timeout_s,
        labels=_LABELS,
        error=ManifestError,
    )
