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

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from plughost.archive._manifest_child import FIELDS
from plughost.archive.errors import ManifestError
from plughost.archive.limits import IntakeLimits

CHILD_SCRIPT = Path(__file__).with_name("_manifest_child.py")
MAX_RESULT_BYTES = 8 * 1024 * 1024
MAX_STDERR_TAIL = 2000
_READ_BYTES = 64 * 1024
_POLL_S = 0.01

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
    result = _run_child(plugin_root.resolve(), limits.manifest_timeout_s)
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


def _run_child(plugin_root: Path, timeout_s: float) -> dict[str, Any]:
    process = subprocess.Popen(
        [sys.executable, "-I", "-B", str(CHILD_SCRIPT), str(plugin_root)],
        cwd=plugin_root,
        env=child_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
    )
    try:
        deadline = time.monotonic() + timeout_s
        stdout, stderr = _collect(process, deadline, timeout_s)
        exited = _wait_unreaped(process.pid, deadline)
    finally:
        _kill_group(process)
    if not exited:
        raise ManifestError([f"manifest.py did not finish within {timeout_s:g} s"])
    return _parse_result(stdout, stderr, process.returncode)


def _collect(
    process: subprocess.Popen[bytes], deadline: float, timeout_s: float
) -> tuple[bytes, bytes]:
    """Read both pipes until they close; keep the result, and only a tail of stderr."""
    assert process.stdout is not None and process.stderr is not None
    stdout = bytearray()
    stderr = bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ, stdout)
        selector.register(process.stderr, selectors.EVENT_READ, stderr)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ManifestError([f"manifest.py did not finish within {timeout_s:g} s"])
            for key, _ in selector.select(remaining):
                _drain(selector, key.fileobj, key.data)
            if len(stdout) > MAX_RESULT_BYTES:
                raise ManifestError([f"manifest output is larger than {MAX_RESULT_BYTES} bytes"])
            del stderr[:-MAX_STDERR_TAIL]
    return bytes(stdout), bytes(stderr)


def _drain(selector: selectors.BaseSelector, stream: Any, sink: bytearray) -> None:
    pipe: IO[bytes] = stream
    chunk = os.read(pipe.fileno(), _READ_BYTES)
    if chunk:
        sink.extend(chunk)
    else:
        selector.unregister(pipe)


def _wait_unreaped(pid: int, deadline: float) -> bool:
    """Wait for ``pid`` to exit without reaping it, so its group id stays reserved."""
    while True:
        try:
            status = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # already reaped elsewhere: it has exited
            return True
        if status is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill whatever is left of the child's session, then reap the child."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def _parse_result(stdout: bytes, stderr: bytes, returncode: int | None) -> dict[str, Any]:
    try:
        result = json.loads(stdout.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        result = None
    if isinstance(result, dict):
        return result
    tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
    detail = f": {tail[0][:300]}" if tail else ""
    raise ManifestError(
        [f"manifest reader stopped without a result (exit code {returncode}){detail}"]
    )
