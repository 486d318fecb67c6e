"""``load_hf_model`` and ``is_hf_model_cached``: Hugging Face models, offline.

Plugin processes have no network. A model is found, in this order:

1. in the local Hugging Face cache the server shares read-only (``PLUGHOST_HF_CACHE``, the
   hub cache layout: ``models--<org>--<name>/snapshots/<revision>/``, the revision named by
   ``refs/main``);
2. among the namespace's models of format ``huggingface`` (:mod:`.index`) whose name is the
   model id, its last part, or either with every character other than letters, digits and
   ``_`` as ``_`` (``intfloat/e5-small`` -> ``e5_small`` or ``intfloat_e5_small``).

Anything else raises :class:`HFModelNotCached` naming the model and how to add it.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from .formats import files_with, has_torch, load_pytorch, load_state_dict_files
from .index import read_index
from .reports import FAILED, OK, report_load

HF_CACHE_ENV = "PLUGHOST_HF_CACHE"


class HFModelNotCached(RuntimeError):
    """The Hugging Face model is neither in the local cache nor a namespace model."""

    def __init__(self, hf_model_id: str) -> None:
        cache = os.environ.get(HF_CACHE_ENV) or "not configured"
        super().__init__(
            f"Hugging Face model {hf_model_id!r} is not available offline: it is not in this "
            f"server's Hugging Face cache (PLUGHOST_HF_CACHE: {cache}) and no namespace model "
            f"of format 'huggingface' is named {suggested_name(hf_model_id)!r}. Plugins have "
            "no network: upload the model's folder (config.json, weights, tokenizer files) as "
            f"a .tar.gz namespace model with model_format=huggingface and name="
            f"{suggested_name(hf_model_id)!r}, or add it to the server's PLUGHOST_HF_CACHE"
        )
        self.hf_model_id = hf_model_id


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def suggested_name(hf_model_id: str) -> str:
    """The namespace model name the error message proposes for ``hf_model_id``."""
    return _clean(hf_model_id.rsplit("/", 1)[-1])


def _candidate_names(hf_model_id: str) -> list[str]:
    last = hf_model_id.rsplit("/", 1)[-1]
    return list(dict.fromkeys([hf_model_id, last, _clean(last), _clean(hf_model_id)]))


def cache_snapshot(hf_model_id: str) -> Path | None:
    """The snapshot folder of ``hf_model_id`` in the shared cache, None if absent."""
    raw = os.environ.get(HF_CACHE_ENV)
    if not raw or not hf_model_id:
        return None
    repo = Path(raw) / ("models--" + hf_model_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    try:
        revision = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        revision = ""
    if revision and (snapshots / revision).is_dir():
        return snapshots / revision
    try:
        found = sorted(p for p in snapshots.iterdir() if p.is_dir())
    except OSError:
        return None
    return found[-1] if len(found) == 1 else None


def namespace_folder(hf_model_id: str) -> Path | None:
    """A namespace model of format huggingface standing for ``hf_model_id``, if any."""
    names = _candidate_names(hf_model_id)
    entries = [e for e in read_index().values() if e.model_format == "huggingface"]
    for wanted in names:
        for entry in entries:
            if wanted in (entry.name, entry.model_id) and entry.folder.is_dir():
                return entry.folder
    return None


def find_hf_folder(hf_model_id: str) -> Path | None:
    return cache_snapshot(hf_model_id) or namespace_folder(hf_model_id)


def is_hf_model_cached(hf_model_id: str) -> bool:
    """True when :func:`load_hf_model` finds ``hf_model_id`` without the network."""
    folder = find_hf_folder(str(hf_model_id))
    return folder is not None and (folder / "config.json").is_file()


def load_hf_model(
    hf_model_id: str,
    model_class: str = "AutoModel",
    tokenizer_class: str | None = "AutoTokenizer",
    torch_dtype: str | None = "float32",
    **kwargs: Any,
) -> dict[str, Any]:
    """Mixpeek's dict: ``state_dict`` (the weights, memory-mapped), ``config`` (config.json),
    ``tokenizer_config`` (``{"tokenizer_dir", "class"}`` when ``tokenizer_class``),
    ``model_class``, ``hf_model_id``; plus ``model_dir``, the local folder."""
    started = time.perf_counter()
    name = str(hf_model_id)
    try:
        result = _load(name, model_class, tokenizer_class, torch_dtype)
    except BaseException:
        report_load(name, FAILED, time.perf_counter() - started)
        raise
    report_load(name, OK, time.perf_counter() - started)
    return result


def _load(
    name: str, model_class: str, tokenizer_class: str | None, torch_dtype: str | None
) -> dict[str, Any]:
    folder = find_hf_folder(name)
    if folder is None or not (folder / "config.json").is_file():
        raise HFModelNotCached(name)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    what = f"Hugging Face model {name!r}"
    top = [p for p in files_with(folder, (".safetensors",)) if p.parent == folder]
    if top:
        state_dict = load_state_dict_files(folder, what)
    else:
        state_dict = load_pytorch(folder, what)
    result: dict[str, Any] = {
        "state_dict": _as_dtype(state_dict, torch_dtype),
        "config": config,
        "model_class": model_class,
        "hf_model_id": name,
        "model_dir": str(folder),
    }
    if tokenizer_class:
        result["tokenizer_config"] = {"tokenizer_dir": str(folder), "class": tokenizer_class}
    return result


def _as_dtype(state_dict: Any, torch_dtype: str | None) -> Any:
    """Floating tensors in ``torch_dtype`` (converting copies them; same dtype: untouched)."""
    if not torch_dtype or not has_torch() or not isinstance(state_dict, dict):
        return state_dict
    import torch

    dtype = getattr(torch, str(torch_dtype).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"unknown torch_dtype {torch_dtype!r}")
    return {
        key: value.to(dtype)
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != dtype
        else value
        for key, value in state_dict.items()
    }
