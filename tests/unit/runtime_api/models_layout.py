"""Lay out a namespace model folder as the server does (index.json + one folder per model)."""

from __future__ import annotations

import json
from pathlib import Path


def add_model(root: Path, model_id: str, model_format: str, files: dict[str, bytes],
              name: str | None = None) -> Path:
    """Write ``files`` into ``root/model_id`` and list the model in ``root/index.json``."""
    folder = root / model_id
    for relative, data in files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    index_path = root / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"models": {}}
    index["models"][model_id] = {
        "name": name or model_id.rsplit("_", 3)[0],
        "version": "1.0.0",
        "model_format": model_format,
        "sha256": "0" * 64,
        "framework": None,
        "task_type": None,
        "path": model_id,
    }
    index_path.write_text(json.dumps(index))
    return folder
