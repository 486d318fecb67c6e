"""Checks that a namespace model's files hold the format it was uploaded as.

Each check reads headers and directories only, never the whole weights, and never runs or
unpickles anything:

* ``safetensors``: every ``*.safetensors`` file (at least one) starts with an 8-byte
  little-endian header length, then that many bytes of a JSON object whose tensors each have
  a ``dtype``, a ``shape`` and ``data_offsets`` inside the data that follows the header,
  spanning exactly the bytes the dtype and shape need, no two tensors overlapping;
* ``onnx``: every ``*.onnx`` file (at least one) parses, at its top level, as protobuf
  fields of a ``ModelProto``: field 1 (``ir_version``) a varint from 1 to 1000, field 7
  (``graph``) a length-delimited field, and every field's length inside the file (nested
  messages are skipped, not parsed);
* ``pytorch``: every ``*.pt`` / ``*.pth`` / ``*.bin`` / ``*.ckpt`` file (at least one) is
  either the zip format of ``torch.save`` (``PK\\x03\\x04``, with a ``data.pkl`` member in
  its directory) or the legacy format (the pickled magic number ``torch.save`` writes first);
* ``huggingface``: a ``config.json`` at the top that parses as a JSON object (any
  ``*.safetensors`` beside it is checked as above).

The pickles of a PyTorch file are loaded only inside the sandbox, with
``torch.load(weights_only=True)``; the server only looks at their container.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

MODEL_FORMATS = ("safetensors", "onnx", "pytorch", "huggingface")
# the safetensors library refuses headers above 100 MB; so does this check
MAX_SAFETENSORS_HEADER = 100_000_000
MAX_CONFIG_JSON = 10_000_000
PYTORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
# torch.save's legacy format: pickle protocol 2, then LONG1 of the 10-byte magic number
# 0x1950a86a20f9469cfc6c (little-endian)
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
ZIP_MAGIC = b"PK\x03\x04"
# bytes per element of the safetensors dtypes whose size is whole bytes (others go unchecked)
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
_ONNX_IR_VERSION, _ONNX_GRAPH = 1, 7


def format_problems(root: Path, model_format: str) -> list[str]:
    """Every way the files under ``root`` are not ``model_format`` (empty: they are)."""
    check = _CHECKS.get(model_format)
    if check is None:
        return [f"model_format {model_format!r} is not one of {', '.join(MODEL_FORMATS)}"]
    return check(root)


def _files(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))


def _label(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _each(
    root: Path, suffixes: tuple[str, ...], what: str, check: Callable[[BinaryIO, int], str | None]
) -> list[str]:
    files = _files(root, suffixes)
    if not files:
        return [f"no {' / '.join('*' + s for s in suffixes)} file in the archive: {what} expected"]
    problems = []
    for path in files:
        with path.open("rb") as stream:
            problem = check(stream, path.stat().st_size)
        if problem:
            problems.append(f"{_label(root, path)}: {problem}; {what} expected")
    return problems


# -- safetensors ---------------------------------------------------------------------------


def _check_safetensors(root: Path) -> list[str]:
    return _each(root, (".safetensors",), "a safetensors file", safetensors_problem)


def safetensors_problem(stream: BinaryIO, size: int) -> str | None:
    """Why the file is not safetensors, or None."""
    if size < 8:
        return "shorter than the 8-byte header length"
    (length,) = struct.unpack("<Q", stream.read(8))
    if length < 2 or length > min(MAX_SAFETENSORS_HEADER, size - 8):
        return f"header length {length} does not fit the file of {size} bytes"
    try:
        header = json.loads(stream.read(length))
    except (ValueError, UnicodeDecodeError) as exc:
        return f"header is not JSON ({exc})"
    if not isinstance(header, dict):
        return "header is not a JSON object"
    data_bytes = size - 8 - length
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict):
                return "__metadata__ is not an object"
            continue
        problem = _tensor_problem(info, data_bytes)
        if problem:
            return f"tensor {name!r}: {problem}"
        begin, end = info["data_offsets"]
        spans.append((begin, end, name))
    return _overlap_problem(spans)


def _overlap_problem(spans: list[tuple[int, int, str]]) -> str | None:
    """Two tensors whose data overlap (each byte belongs to at most one tensor, as the
    safetensors library requires)."""
    spans.sort()
    for (_, end, first), (begin, _, second) in itertools.pairwise(spans):
        if begin < end:
            return f"tensors {first!r} and {second!r} overlap in the data"
    return None


def _tensor_problem(info: object, data_bytes: int) -> str | None:
    if not isinstance(info, dict):
        return "not an object"
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str):
        return "no dtype"
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        return "shape is not a list of sizes"
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) for o in offsets)
    ):
        return "data_offsets is not [begin, end]"
    begin, end = offsets
    if not 0 <= begin <= end <= data_bytes:
        return f"data_offsets {offsets} lie outside the {data_bytes} data bytes"
    width = DTYPE_BYTES.get(dtype)
    if width is not None and end - begin != math.prod(shape) * width:
        return (
            f"data_offsets {offsets} hold {end - begin} bytes, but a {dtype} tensor of shape "
            f"{shape} needs {math.prod(shape) * width}"
        )
    return None


# -- onnx ----------------------------------------------------------------------------------


def _check_onnx(root: Path) -> list[str]:
    return _each(root, (".onnx",), "an ONNX ModelProto", onnx_problem)


def _varint(stream: BinaryIO) -> int | None:
    value, shift = 0, 0
    while shift < 70:
        byte = stream.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
    return None


def _fields(stream: BinaryIO, size: int) -> Iterator[tuple[int, int, int | None]]:
    """(field number, wire type, varint value) of each top-level field; ValueError when the
    bytes are not protobuf."""
    while stream.tell() < size:
        tag = _varint(stream)
        if tag is None or tag >> 3 == 0:
            raise ValueError(f"no protobuf field tag at byte {stream.tell()}")
        number, wire = tag >> 3, tag & 7
        value = None
        if wire == 0:
            value = _varint(stream)
            if value is None:
                raise ValueError("truncated varint")
        elif wire in (1, 5):
            stream.seek(8 if wire == 1 else 4, 1)
        elif wire == 2:
            length = _varint(stream)
            if length is None:
                raise ValueError("truncated length")
            stream.seek(length, 1)
        else:
            raise ValueError(f"wire type {wire} of field {number} is not one ONNX uses")
        if stream.tell() > size:
            raise ValueError(f"field {number} runs past the end of the file")
        yield number, wire, value


def onnx_problem(stream: BinaryIO, size: int) -> str | None:
    """Why the file is not an ONNX ModelProto, or None."""
    seen: dict[int, tuple[int, int | None]] = {}
    try:
        for number, wire, value in _fields(stream, size):
            seen.setdefault(number, (wire, value))
    except ValueError as exc:
        return f"not protobuf ({exc})"
    ir = seen.get(_ONNX_IR_VERSION)
    if ir is None or ir[0] != 0 or not 1 <= (ir[1] or 0) <= 1000:
        return "no ir_version (field 1)"
    graph = seen.get(_ONNX_GRAPH)
    if graph is None or graph[0] != 2:
        return "no graph (field 7)"
    return None


# -- pytorch -------------------------------------------------------------------------------


def _check_pytorch(root: Path) -> list[str]:
    return _each(root, PYTORCH_SUFFIXES, "a torch.save file", pytorch_problem)


def pytorch_problem(stream: BinaryIO, size: int) -> str | None:
    """Why the file is not a torch.save file, or None (its pickles are never loaded here)."""
    head = stream.read(len(LEGACY_TORCH_MAGIC))
    if head == LEGACY_TORCH_MAGIC:
        return None
    if not head.startswith(ZIP_MAGIC):
        return "neither a torch.save zip (PK\\x03\\x04) nor its legacy pickle magic"
    stream.seek(0)
    try:
        with zipfile.ZipFile(stream) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return f"a broken zip ({exc})"
    if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        return "a zip without the data.pkl of torch.save"
    return None


# -- huggingface ---------------------------------------------------------------------------


def _check_huggingface(root: Path) -> list[str]:
    config = root / "config.json"
    what = "a Hugging Face model folder (config.json at its top)"
    if not config.is_file():
        return [f"config.json: missing at the top of the archive; {what} expected"]
    if config.stat().st_size > MAX_CONFIG_JSON:
        return [f"config.json: larger than {MAX_CONFIG_JSON} bytes; {what} expected"]
    try:
        parsed = json.loads(config.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        return [f"config.json: not JSON ({exc}); {what} expected"]
    if not isinstance(parsed, dict):
        return [f"config.json: not a JSON object; {what} expected"]
    if not _files(root, (".safetensors",)):
        return []
    return _check_safetensors(root)


_CHECKS: dict[str, Callable[[Path], list[str]]] = {
    "safetensors": _check_safetensors,
    "onnx": _check_onnx,
    "pytorch": _check_pytorch,
    "huggingface": _check_huggingface,
}
