"""Read a ``.safetensors`` file as tensors that live in the file's pages, not in copies.

The file is mapped copy-on-write (``MAP_PRIVATE``): until a tensor is written to, its bytes
are the page cache's, so every process on the machine that maps the same file (N replicas,
the batch workers; the hard links of one blob are one inode) shares one copy of the weights.
A tensor written to gets private copies of the pages it touched, nothing more.

Format: 8 bytes little-endian header length, a JSON header ``{name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {...}}``, then the data.
"""

from __future__ import annotations

import json
import mmap
import struct
import warnings
from pathlib import Path
from typing import Any

MAX_HEADER_BYTES = 100 << 20

# safetensors dtype -> (numpy name or None, torch attribute name, bytes per item)
DTYPES: dict[str, tuple[str | None, str, int]] = {
    "F64": ("float64", "float64", 8),
    "F32": ("float32", "float32", 4),
    "F16": ("float16", "float16", 2),
    "BF16": (None, "bfloat16", 2),
    "I64": ("int64", "int64", 8),
    "I32": ("int32", "int32", 4),
    "I16": ("int16", "int16", 2),
    "I8": ("int8", "int8", 1),
    "U8": ("uint8", "uint8", 1),
    "U16": ("uint16", "uint16", 2),
    "U32": ("uint32", "uint32", 4),
    "U64": ("uint64", "uint64", 8),
    "BOOL": ("bool", "bool", 1),
    "F8_E4M3": (None, "float8_e4m3fn", 1),
    "F8_E5M2": (None, "float8_e5m2", 1),
}


class SafetensorsError(ValueError):
    """The file is not a readable safetensors file (the message names it and why)."""


def read_header(mapped: mmap.mmap, path: Path) -> tuple[dict[str, Any], int]:
    """The tensors' header entries and the offset of the data section."""
    if len(mapped) < 8:
        raise SafetensorsError(f"{path.name}: too short for a safetensors file")
    (size,) = struct.unpack("<Q", mapped[:8])
    if size > MAX_HEADER_BYTES or 8 + size > len(mapped):
        raise SafetensorsError(f"{path.name}: header length {size} does not fit the file")
    try:
        header = json.loads(mapped[8 : 8 + size])
    except ValueError as exc:
        raise SafetensorsError(f"{path.name}: header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path.name}: header is not a JSON object")
    header.pop("__metadata__", None)
    return header, 8 + size


def load_safetensors(path: Path, framework: str) -> dict[str, Any]:
    """``{name: tensor}`` of ``path``: torch tensors (``framework="pt"``) or numpy arrays
    (``"np"``), each a view into the mapped file."""
    with path.open("rb") as handle:
        size = path.stat().st_size
        if size == 0:
            raise SafetensorsError(f"{path.name}: empty file")
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    header, start = read_header(mapped, path)
    out: dict[str, Any] = {}
    for name, info in header.items():
        out[name] = _tensor(mapped, start, name, info, framework, path)
    return out


def _tensor(
    mapped: mmap.mmap, start: int, name: str, info: Any, framework: str, path: Path
) -> Any:
    try:
        dtype = str(info["dtype"])
        shape = [int(x) for x in info["shape"]]
        begin, end = (int(x) for x in info["data_offsets"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SafetensorsError(f"{path.name}: tensor {name!r} has a malformed entry") from exc
    if dtype not in DTYPES:
        raise SafetensorsError(f"{path.name}: tensor {name!r} has unknown dtype {dtype}")
    np_name, torch_name, item = DTYPES[dtype]
    count = 1
    for dim in shape:
        count *= dim
    if end - begin != count * item or start + end > len(mapped) or begin < 0:
        raise SafetensorsError(f"{path.name}: tensor {name!r} does not fit its offsets")
    offset = start + begin
    if framework == "pt":
        return _torch_tensor(mapped, offset, count, item, torch_name, shape)
    if np_name is None:
        raise SafetensorsError(
            f"{path.name}: tensor {name!r} is {dtype}, which numpy cannot hold (install torch)"
        )
    import numpy as np

    if count == 0:
        return np.zeros(shape, dtype=np_name)
    return np.frombuffer(mapped, dtype=np_name, count=count, offset=offset).reshape(shape)


def _torch_tensor(
    mapped: mmap.mmap, offset: int, count: int, item: int, torch_name: str, shape: list[int]
) -> Any:
    import torch

    dtype = getattr(torch, torch_name)
    if count == 0:
        return torch.zeros(shape, dtype=dtype)
    if offset % item:  # a misaligned tensor is copied rather than viewed
        raw = bytearray(mapped[offset : offset + count * item])
        return torch.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flat = torch.frombuffer(mapped, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape)
