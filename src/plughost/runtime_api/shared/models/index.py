"""The namespace's models as this process sees them: ``$PLUGHOST_MODELS_DIR/index.json``.

plughost shows every process that runs plugin code the folder of its own namespace's models,
read-only: inside the sandbox at ``/plughost/models``, else at its real path, named by the
environment variable ``PLUGHOST_MODELS_DIR``. The folder holds ``index.json``::

    {"models": {"<model_id>": {"name", "version", "model_format", "sha256",
                               "framework", "task_type", "path": "<model_id>"}}}

where ``path`` is relative to the folder. The server rewrites the file atomically whenever
the namespace's models change, so each lookup reads it afresh.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODELS_DIR_ENV = "PLUGHOST_MODELS_DIR"
INDEX_FILE = "index.json"
FORMATS = ("safetensors", "onnx", "pytorch", "huggingface")


class NamespaceModelUnavailable(RuntimeError):
    """The model cannot be loaded: unknown in this namespace, its files missing or unreadable.

    ``model_name`` is the id asked for; ``available`` the ids this namespace has."""

    def __init__(self, name: str, message: str, available: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.model_name = name
        self.available = available


@dataclass(frozen=True)
class ModelEntry:
    """One model of the namespace: its id, its folder here and what the index says of it."""

    model_id: str
    folder: Path
    name: str
    version: str
    model_format: str
    framework: str | None = None
    task_type: str | None = None
    sha256: str | None = None


def models_dir() -> Path | None:
    """The namespace's model folder of this process, None when it is given none."""
    raw = os.environ.get(MODELS_DIR_ENV)
    return Path(raw) if raw else None


def read_index(folder: Path | None = None) -> dict[str, ModelEntry]:
    """Every model of the namespace by id (empty without a folder or an index)."""
    root = folder if folder is not None else models_dir()
    if root is None:
        return {}
    try:
        raw = json.loads((root / INDEX_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise NamespaceModelUnavailable("", f"the namespace's model index cannot be read: {exc}")
    models = raw.get("models") if isinstance(raw, dict) else None
    if not isinstance(models, dict):
        return {}
    return {
        str(model_id): _entry(root, str(model_id), meta)
        for model_id, meta in models.items()
        if isinstance(meta, dict)
    }


def _entry(root: Path, model_id: str, meta: dict[str, Any]) -> ModelEntry:
    relative = str(meta.get("path") or model_id)
    folder = (root / relative).resolve()
    if not folder.is_relative_to(root.resolve()):
        folder = root / model_id  # an index never points outside its folder
    return ModelEntry(
        model_id=model_id,
        folder=folder,
        name=str(meta.get("name") or model_id),
        version=str(meta.get("version") or ""),
        model_format=str(meta.get("model_format") or ""),
        framework=_text(meta.get("framework")),
        task_type=_text(meta.get("task_type")),
        sha256=_text(meta.get("sha256")),
    )


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def find_model(model_id: str) -> ModelEntry:
    """The entry of ``model_id``; NamespaceModelUnavailable listing the ids there are."""
    root = models_dir()
    if root is None:
        raise NamespaceModelUnavailable(
            model_id,
            f"namespace model {model_id!r} cannot be loaded: this process was given no "
            f"namespace model folder ({MODELS_DIR_ENV} is not set; plughost sets it in "
            "deployed plugins and batch jobs)",
        )
    index = read_index(root)
    entry = index.get(model_id)
    if entry is None:
        ids = tuple(sorted(index))
        listed = ", ".join(ids) if ids else "none"
        raise NamespaceModelUnavailable(
            model_id,
            f"namespace model {model_id!r} is not in this namespace (its models: {listed}); "
            "upload it with POST /v1/namespaces/{namespace}/models or enable an organization "
            "model in this namespace",
            ids,
        )
    if not entry.folder.is_dir():
        raise NamespaceModelUnavailable(
            model_id, f"namespace model {model_id!r} has no files at {entry.folder}"
        )
    return entry
