"""What ``load_namespace_model`` returns for each model format.

- ``safetensors``: ``{name: tensor}`` of every ``.safetensors`` file of the model (shards
  merged), torch tensors when torch is importable, else numpy arrays; memory-mapped
  (:mod:`.safetensors_mmap`).
- ``pytorch``: ``torch.load(file, weights_only=True)`` of its ``.pt``/``.pth``/``.bin`` file,
  memory-mapped when the file is in torch's zip format; a TorchScript archive
  (``torch.jit.save``) loads with ``torch.jit.load`` (TorchScript, never pickled Python).
- ``onnx``: :class:`OnnxModel`, the path of the ``.onnx`` file (a ``str``), with
  ``.session`` an ``onnxruntime.InferenceSession`` when onnxruntime is importable.
- ``huggingface``: the model's folder (a ``str``), for ``from_pretrained``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from .safetensors_mmap import load_safetensors

PYTORCH_SUFFIXES = (".pt", ".pth", ".bin")


class OnnxModel(str):
    """The path of an ONNX model file; ``session`` is an ``onnxruntime.InferenceSession``
    on it when onnxruntime is installed, else None."""

    session: Any = None

    @property
    def path(self) -> str:
        return str(self)


def files_with(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The model's files with one of ``suffixes``, anywhere below ``folder``, sorted."""
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
    )


def has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def load_state_dict_files(folder: Path, what: str) -> dict[str, Any]:
    """The merged tensors of every safetensors file below ``folder`` (FileNotFoundError
    naming ``what`` when there is none)."""
    files = files_with(folder, (".safetensors",))
    if not files:
        raise FileNotFoundError(f"{what} has no .safetensors file")
    framework = "pt" if has_torch() else "np"
    merged: dict[str, Any] = {}
    for path in files:
        merged.update(load_safetensors(path, framework))
    return merged


def load_pytorch(folder: Path, what: str) -> Any:
    files = files_with(folder, PYTORCH_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{what} has no .pt, .pth or .bin file")
    if not has_torch():
        raise ModuleNotFoundError(f"{what} is a pytorch model: loading it needs torch")
    import torch

    merged: dict[str, Any] = {}
    for path in files:
        loaded = _torch_load(torch, path)
        if len(files) == 1:
            return loaded
        if not isinstance(loaded, dict):
            raise TypeError(f"{what}: {path.name} holds no state_dict to merge with the others")
        merged.update(loaded)
    return merged


def _torch_load(torch: Any, path: Path) -> Any:
    """``weights_only`` always (no pickle code runs); mapped when the file allows it."""
    if _is_torchscript(path):
        return torch.jit.load(str(path), map_location="cpu")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc) and "zip" not in str(exc):
            raise
        return torch.load(str(path), map_location="cpu", weights_only=True)


def _is_torchscript(path: Path) -> bool:
    """A ``torch.jit.save`` archive: a zip whose top folder holds ``code/`` and
    ``constants.pkl`` (a plain ``torch.save`` zip has neither)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any("/code/" in n for n in names) and any(n.endswith("/constants.pkl") for n in names)


def load_onnx(folder: Path, what: str) -> OnnxModel:
    files = files_with(folder, (".onnx",))
    if not files:
        raise FileNotFoundError(f"{what} has no .onnx file")
    model = OnnxModel(str(files[0]))
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        model.session = onnxruntime.InferenceSession(str(files[0]))
    return model


def load_format(model_format: str, folder: Path, what: str) -> Any:
    """The loaded model of ``model_format`` from ``folder`` (``what`` names it in errors)."""
    if model_format == "safetensors":
        return load_state_dict_files(folder, what)
    if model_format == "pytorch":
        return load_pytorch(folder, what)
    if model_format == "onnx":
        return load_onnx(folder, what)
    if model_format == "huggingface":
        return str(folder)
    raise ValueError(f"{what} has an unknown model format {model_format!r}")
