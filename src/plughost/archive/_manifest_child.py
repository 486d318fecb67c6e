"""Child process that loads a plugin's manifest.py and reports it as one JSON object.

Run as ``python -I -B _manifest_child.py <plugin_root> [<import_dir>...]`` with the plugin root
as working directory. It is started by path and imports the standard library only, except
for its sibling ``_serve_config``, loaded by path before any plugin code runs, which takes the
serve_config keys from the server's own installation (:mod:`plughost.domain.serve_config`,
itself standard library only) while no plugin folder is yet on the import path. The
``import_dir`` folders (the runtime API folder, so that a manifest may import ``shared.*`` and
``engine.*``) go on ``sys.path`` right after the plugin root.

Protocol: file descriptor 1 is kept private for the result; the manifest's own prints go to
stderr. Exactly one JSON object is written to the private descriptor:
``{"ok": true, "fields": {...}, "class_serve_config": {...}}`` with the raw (JSON-safe, not yet
validated) fields and the literal serve_config of realtime.py's service class, or
``{"ok": false, "error": "<message>"}``. The process then exits at once, skipping any
``atexit`` hooks the manifest registered.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.machinery
import importlib.util
import json
import math
import os
import sys
from typing import Any

FIELDS = (
    "feature_extractor_name",
    "version",
    "description",
    "category",
    "input_schema",
    "output_schema",
    "parameter_schema",
    "features",
    "dependencies",
    "required_vector_indexes",
    "serve_config",
    "compute_profile",
    "feature_uri",
    "input_mappings",
    "supported_input_types",
    "example_input",
    "cost_rates",
)
MAX_DEPTH = 64
PACKAGE = "plughost_plugin"


def main(argv: list[str]) -> int:
    """Entry point; always writes one result object and returns 0."""
    result_fd = os.dup(1)
    os.dup2(2, 1)
    class_config = _class_serve_config(argv[1])
    try:
        module = _load(argv[1], argv[2:])
    except BaseException as exc:  # noqa: BLE001 - manifest code may raise anything
        result: dict[str, Any] = {"ok": False, "error": f"manifest.py raised {_name(exc)}"}
    else:
        result = _describe(vars(module))
        result["class_serve_config"] = class_config
    _flush_standard_streams()
    try:
        payload = json.dumps(result, ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        payload = json.dumps({"ok": False, "error": f"manifest could not be encoded: {exc}"})
    _write_all(result_fd, (payload + "\n").encode("ascii"))
    return 0


def _describe(namespace: dict[str, Any]) -> dict[str, Any]:
    try:
        metadata = _metadata(namespace.get("metadata"))
    except Exception as exc:  # noqa: BLE001 - model_dump is manifest code
        return {"ok": False, "error": f"manifest metadata could not be read: {_name(exc)}"}
    if "feature_extractor_name" not in namespace and metadata is None:
        return {
            "ok": False,
            "error": "manifest.py defines neither feature_extractor_name nor a metadata dict",
        }
    fields: dict[str, Any] = {}
    for key in FIELDS:
        found, value = _lookup(namespace, metadata, key)
        if not found:
            continue
        try:
            fields[key] = _jsonable(value, 0)
        except Exception as exc:  # noqa: BLE001 - schema export runs manifest code
            return {
                "ok": False,
                "error": f"manifest field '{key}' could not be converted to JSON: {_name(exc)}",
            }
    style = "attributes" if metadata is None else "metadata"
    return {"ok": True, "style": style, "fields": fields}


def _class_serve_config(plugin_root: str) -> dict[str, Any]:
    """The serve_config realtime.py's service class declares, read statically ({} if none)."""
    path = os.path.join(plugin_root, "realtime.py")
    if not os.path.isfile(path):
        return {}
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(
        "_plughost_serve_config", os.path.join(here, "_serve_config.py")
    )
    if spec is None or spec.loader is None:
        return {}
    helper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helper)
    try:
        with open(path, encoding="utf-8") as source:
            return dict(helper.class_serve_config(source.read()))
    except (OSError, UnicodeDecodeError):
        return {}


def _load(plugin_root: str, import_dirs: list[str]) -> Any:
    """Execute manifest.py as ``manifest`` (its top-level name) that is also the submodule
    ``manifest`` of a package whose path is the plugin root, so that both ``import helpers``
    and ``from .helpers import x`` work in it. The plugin's own ``__init__.py`` is not run:
    it may import the realtime and pipeline modules, which the manifest does not need."""
    sys.path.insert(0, plugin_root)
    for position, folder in enumerate(import_dirs, start=1):
        sys.path.insert(position, folder)
    package = importlib.machinery.ModuleSpec(PACKAGE, None, is_package=True)
    package.submodule_search_locations = [plugin_root]
    sys.modules[PACKAGE] = importlib.util.module_from_spec(package)
    path = os.path.join(plugin_root, "manifest.py")
    spec = importlib.util.spec_from_file_location(f"{PACKAGE}.manifest", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["manifest"] = sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _metadata(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        dumped = dump()
        return dumped if isinstance(dumped, dict) else None
    return None


def _lookup(
    namespace: dict[str, Any], metadata: dict[str, Any] | None, key: str
) -> tuple[bool, Any]:
    """Module attribute first, then the metadata dict (where ``name`` may stand for the name)."""
    if namespace.get(key) is not None:
        return True, namespace[key]
    if metadata is None:
        return key in namespace, namespace.get(key)
    if key in metadata:
        return True, metadata[key]
    if key == "feature_extractor_name" and "name" in metadata:
        return True, metadata["name"]
    return False, None


def _jsonable(value: Any, depth: int) -> Any:
    """Convert manifest values into plain JSON values (pydantic classes become JSON schema)."""
    if depth > MAX_DEPTH:
        raise ValueError(f"value nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, depth + 1)
    if isinstance(value, dict):
        return {_key(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, depth + 1) for item in value]
    if isinstance(value, (set, frozenset)):
        return [_jsonable(item, depth + 1) for item in sorted(value, key=repr)]
    if isinstance(value, type):
        return _class_value(value, depth)
    return _object_value(value, depth)


def _class_value(cls: type, depth: int) -> Any:
    """A pydantic model class becomes its JSON schema; any other class, its name."""
    schema = getattr(cls, "model_json_schema", None)
    if schema is None and hasattr(cls, "__fields__"):
        schema = getattr(cls, "schema", None)  # pydantic v1 models
    if callable(schema):
        return _jsonable(schema(), depth + 1)
    return cls.__name__


def _object_value(value: Any, depth: int) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return _jsonable(dump(mode="json"), depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value), depth + 1)
    return str(value)


def _key(key: Any) -> str:
    return key if isinstance(key, str) else str(key)


def _flush_standard_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            continue


def _name(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.close(fd)


if __name__ == "__main__":
    os._exit(main(sys.argv))
