"""Model intake: safe unpacking with the model limits, the top folder stripped, and each
format checked against the files (good and bad), nothing ever unpickled."""

from __future__ import annotations

import io
import json
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest
from model_support import GOOD, hf_files, model_tar, onnx_bytes, safetensors_bytes, torch_bytes

from plughost.archive.errors import ArchiveError, UnsafeArchiveError
from plughost.archive.model_formats import (
    LEGACY_TORCH_MAGIC,
    format_problems,
    onnx_problem,
    pytorch_problem,
    safetensors_problem,
)
from plughost.archive.model_intake import ModelFormatError, take_in_model

MAX = 1 << 20


def _archive(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "model.tar.gz"
    path.write_bytes(data)
    return path


def _st(header: dict[str, object], data_bytes: int = 0) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + b"\0" * data_bytes


def _check(check, data: bytes) -> str | None:  # type: ignore[no-untyped-def]
    return check(io.BytesIO(data), len(data))


@pytest.mark.parametrize("model_format", sorted(GOOD))
def test_each_good_format_is_taken_in_with_its_top_folder_stripped(
    tmp_path: Path, model_format: str
) -> None:
    files = GOOD[model_format]
    archive = _archive(tmp_path, model_tar(files, "my_model/"))
    intake = take_in_model(archive, tmp_path / "out", model_format, MAX)
    assert sorted(p.name for p in intake.root.iterdir()) == sorted(files)
    assert intake.root.name == "my_model"
    assert intake.size_bytes == sum(len(v if isinstance(v, bytes) else v.encode()) for v in files.values())


def test_a_pytorch_state_dict_is_taken_in_without_being_loaded(tmp_path: Path) -> None:
    archive = _archive(tmp_path, model_tar({"weights.pt": torch_bytes()}))
    intake = take_in_model(archive, tmp_path / "out", "pytorch", MAX)
    assert (intake.root / "weights.pt").is_file()


def test_a_legacy_torch_file_is_recognised_by_its_magic() -> None:
    assert _check(pytorch_problem, LEGACY_TORCH_MAGIC + b"rest of the pickle") is None


def test_a_plain_pickle_is_not_pytorch_and_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Boom:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (marker.write_text, ("unpickled",))

    data = pickle.dumps(Boom())
    archive = _archive(tmp_path, model_tar({"weights.pt": data}))
    with pytest.raises(ModelFormatError) as caught:
        take_in_model(archive, tmp_path / "out", "pytorch", MAX)
    assert "weights.pt" in caught.value.errors[0] and "torch.save" in caught.value.errors[0]
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_a_zip_without_data_pkl_is_not_pytorch() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/other.txt", "x")
    assert "data.pkl" in (_check(pytorch_problem, buf.getvalue()) or "")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x01\x02", "shorter than"),
        (struct.pack("<Q", 10**9) + b"{}", "does not fit"),
        (struct.pack("<Q", 4) + b"nope", "not JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (_st({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, 8), "outside"),
        (_st({"w": {"dtype": "F32", "shape": [4]}}), "data_offsets"),
        (_st({"w": {"shape": [4], "data_offsets": [0, 0]}}), "no dtype"),
        (_st({"__metadata__": [1]}), "__metadata__"),
    ],
)
def test_bad_safetensors_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    assert reason in (_check(safetensors_problem, data) or "")


def test_good_safetensors_pass_the_header_check() -> None:
    assert _check(safetensors_problem, safetensors_bytes({"a": [1.0], "b": [2.0, 3.0]})) is None


def test_the_safetensors_library_reads_what_the_check_accepts(tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import load_file, save_file

    path = tmp_path / "lib.safetensors"
    save_file({"w": np.arange(6, dtype=np.float32)}, str(path))
    assert _check(safetensors_problem, path.read_bytes()) is None
    hand = tmp_path / "hand.safetensors"
    hand.write_bytes(safetensors_bytes())
    assert list(load_file(str(hand))["weight"]) == [1.0, 2.0, 3.0, 4.0]


def test_a_minimal_onnx_model_passes_and_text_does_not() -> None:
    assert _check(onnx_problem, onnx_bytes()) is None
    assert _check(onnx_problem, b"this is not a model at all") is not None
    assert "not protobuf" in (_check(onnx_problem, b"\x07\x00") or "")


def test_onnx_needs_ir_version_and_graph() -> None:
    graph_only = b"\x3a\x02\x0a\x00"  # field 7, 2 bytes
    assert "ir_version" in (_check(onnx_problem, graph_only) or "")
    ir_only = b"\x08\x08"
    assert "graph" in (_check(onnx_problem, ir_only) or "")
    truncated = b"\x08\x08\x3a\x7f\x00"  # a graph longer than the file
    assert "past the end" in (_check(onnx_problem, truncated) or "")


def test_a_format_mismatch_names_the_file_and_what_was_expected(tmp_path: Path) -> None:
    archive = _archive(tmp_path, model_tar({"model.onnx": b"garbage bytes here"}))
    with pytest.raises(ModelFormatError) as caught:
        take_in_model(archive, tmp_path / "out", "onnx", MAX)
    assert caught.value.errors[0].startswith("model.onnx: ")
    assert "ONNX ModelProto expected" in caught.value.errors[0]


def test_no_file_of_the_format_is_refused(tmp_path: Path) -> None:
    assert "no *.safetensors file" in format_problems(_unpacked(tmp_path, {"a.txt": b"x"}), "safetensors")[0]


def _unpacked(tmp_path: Path, files: dict[str, bytes]) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


def test_huggingface_needs_a_config_json_object(tmp_path: Path) -> None:
    files = dict(hf_files())
    del files["config.json"]
    archive = _archive(tmp_path, model_tar(files))
    with pytest.raises(ModelFormatError, match="config.json: missing"):
        take_in_model(archive, tmp_path / "a", "huggingface", MAX)
    archive = _archive(tmp_path, model_tar({**files, "config.json": "[1, 2]"}))
    with pytest.raises(ModelFormatError, match="not a JSON object"):
        take_in_model(archive, tmp_path / "b", "huggingface", MAX)


def test_path_traversal_and_links_are_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("../escape.safetensors")
        data = safetensors_bytes()
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link.safetensors")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(UnsafeArchiveError) as caught:
        take_in_model(_archive(tmp_path, buf.getvalue()), tmp_path / "out", "safetensors", MAX)
    text = " ".join(caught.value.errors)
    assert "escape" in text and "link.safetensors" in text
    assert not (tmp_path / "escape.safetensors").exists()


def test_the_size_limit_holds_for_the_archive_and_what_it_unpacks_to(tmp_path: Path) -> None:
    zeros = safetensors_bytes({"w": [0.0] * 100_000})  # 400 kB that compress to almost nothing
    archive = _archive(tmp_path, model_tar({"model.safetensors": zeros}))
    assert archive.stat().st_size < 100_000
    with pytest.raises(ArchiveError, match="limit of 200000 bytes"):
        take_in_model(archive, tmp_path / "out", "safetensors", 200_000)
    # weights of zeros compress a thousandfold: within the byte limit they are taken in
    assert take_in_model(archive, tmp_path / "ok", "safetensors", MAX).size_bytes == len(zeros)
    with pytest.raises(ArchiveError, match="above the limit"):
        take_in_model(archive, tmp_path / "out2", "safetensors", 1000)


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    assert "not one of" in format_problems(tmp_path, "tensorflow")[0]
