"""Small model files of each namespace-model format, built by hand (and by torch.save for
PyTorch), and their archives: shared by the unit, in-process and live-server tests."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

from support import tar_gz_bytes


def safetensors_bytes(tensors: dict[str, list[float]] | None = None) -> bytes:
    """A safetensors file of float32 vectors (the layout the safetensors library writes)."""
    tensors = tensors if tensors is not None else {"weight": [1.0, 2.0, 3.0, 4.0]}
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    data = b""
    for name, values in tensors.items():
        raw = struct.pack(f"<{len(values)}f", *values)
        header[name] = {
            "dtype": "F32",
            "shape": [len(values)],
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + data


def _varint(value: int) -> bytes:
    out = b""
    while True:
        byte, value = value & 0x7F, value >> 7
        out += bytes([byte | (0x80 if value else 0)])
        if not value:
            return out


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def onnx_bytes() -> bytes:
    """A minimal ModelProto: ir_version 8, a producer, a graph with one Identity node and
    an opset import (protobuf written by hand: onnx is not installed)."""
    node = _field(1, b"x") + _field(2, b"y") + _field(4, b"Identity")
    graph = _field(1, node) + _field(2, b"g")
    opset = _field(1, b"") + _varint(2 << 3) + _varint(17)
    return _varint(1 << 3) + _varint(8) + _field(2, b"plughost-test") + _field(7, graph) + _field(8, opset)


def torch_bytes() -> bytes:
    """A state_dict written by torch.save (zip format)."""
    import torch

    buf = io.BytesIO()
    torch.save({"weight": torch.arange(4, dtype=torch.float32)}, buf)
    return buf.getvalue()


def hf_files() -> dict[str, str | bytes]:
    return {
        "config.json": json.dumps({"model_type": "bert", "hidden_size": 4}),
        "model.safetensors": safetensors_bytes(),
    }


def model_tar(files: dict[str, str | bytes], folder: str = "") -> bytes:
    """A .tar.gz of ``files``; ``folder`` (e.g. ``"my_model/"``) puts them under one top folder."""
    return tar_gz_bytes(files, folder)


GOOD: dict[str, dict[str, str | bytes]] = {
    "safetensors": {"model.safetensors": safetensors_bytes()},
    "onnx": {"model.onnx": onnx_bytes()},
    "huggingface": hf_files(),
}
