"""load_namespace_model from shared.models.loader, engine.models.loader and engine.models,
against a namespace folder laid out as the server lays it out."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import engine.models
import engine.models.loader
import numpy as np
import pytest
import shared.models.loader
import torch
from safetensors.torch import save as save_safetensors
from shared.models.index import MODELS_DIR_ENV
from shared.models.loader import NamespaceModelUnavailable, OnnxModel

from plughost.runtime_api import RUNTIME_API_DIR

from .models_layout import add_model


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ns"
    root.mkdir()
    (root / "index.json").write_text('{"models": {}}')
    monkeypatch.setenv(MODELS_DIR_ENV, str(root))
    return root


def _weights() -> dict[str, torch.Tensor]:
    return {"linear.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4),
            "linear.bias": torch.tensor([1.0, 2.0, 3.0])}


def test_the_three_import_paths_give_the_same_function() -> None:
    assert engine.models.load_namespace_model is shared.models.loader.load_namespace_model
    assert engine.models.loader.load_namespace_model is shared.models.loader.load_namespace_model


def test_safetensors_loads_as_torch_tensors(models_dir: Path) -> None:
    add_model(models_dir, "tiny_1_0_0", "safetensors",
              {"model.safetensors": save_safetensors(_weights())})
    weights = engine.models.load_namespace_model("tiny_1_0_0")
    assert set(weights) == {"linear.weight", "linear.bias"}
    assert torch.equal(weights["linear.weight"], _weights()["linear.weight"])
    layer = torch.nn.Linear(4, 3)
    layer.load_state_dict({k.split(".", 1)[1]: v for k, v in weights.items()})
    assert layer(torch.ones(1, 4)).tolist() == [[7.0, 24.0, 41.0]]


def test_safetensors_shards_are_merged(models_dir: Path) -> None:
    add_model(models_dir, "shards_1_0_0", "safetensors", {
        "model-00001-of-00002.safetensors": save_safetensors({"a": torch.ones(2)}),
        "model-00002-of-00002.safetensors": save_safetensors({"b": torch.zeros(3)}),
    })
    assert set(engine.models.load_namespace_model("shards_1_0_0")) == {"a", "b"}


def test_safetensors_tensors_live_in_the_mapped_file(models_dir: Path) -> None:
    """The tensor's bytes are the file's pages (a file-backed mapping), not a heap copy."""
    add_model(models_dir, "big_1_0_0", "safetensors",
              {"model.safetensors": save_safetensors({"w": torch.full((256, 1024), 2.0)})})
    weights = engine.models.load_namespace_model("big_1_0_0")
    address = weights["w"].data_ptr()
    maps = Path("/proc/self/maps").read_text().splitlines()
    backing = [line for line in maps if _contains(line, address)]
    assert backing and backing[0].endswith("model.safetensors"), backing


def _contains(line: str, address: int) -> bool:
    low, high = (int(x, 16) for x in line.split()[0].split("-"))
    return low <= address < high


def test_safetensors_weights_are_page_cache_pages_not_copies(models_dir: Path) -> None:
    """After loading and reading 64 MiB of weights, the file's mapping is resident and holds
    no anonymous (copied) page: every process mapping the file shares those pages. Writing
    to the tensor is what would copy them (checked too, so the probe can see a copy)."""
    add_model(models_dir, "shared_1_0_0", "safetensors",
              {"model.safetensors": save_safetensors({"w": torch.ones(16, 1024, 1024)})})
    probe = textwrap.dedent(f"""
        import sys
        sys.path.append({str(RUNTIME_API_DIR)!r})
        from engine.models import load_namespace_model

        def mapping():
            lines = open("/proc/self/smaps").read().splitlines()
            for i, line in enumerate(lines):
                if line.endswith("model.safetensors"):
                    fields = dict(l.split(":", 1) for l in lines[i + 1 : i + 20] if ":" in l)
                    return [int(fields[k].split()[0]) for k in ("Rss", "Anonymous")]

        w = load_namespace_model("shared_1_0_0")["w"]
        assert float(w.sum()) == 16 * 1024 * 1024
        print(*mapping())
        w.add_(1)
        print(*mapping())
    """)
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", MODELS_DIR_ENV: str(models_dir)},
    )
    assert done.returncode == 0, done.stderr
    (rss, anonymous), (_, anonymous_after_write) = (
        [int(x) for x in line.split()] for line in done.stdout.splitlines()
    )
    assert rss >= 64 * 1024 and anonymous == 0
    assert anonymous_after_write >= 64 * 1024


def test_pytorch_loads_with_weights_only(models_dir: Path) -> None:
    buffer = io.BytesIO()
    torch.save(_weights(), buffer)
    add_model(models_dir, "pt_1_0_0", "pytorch", {"weights.pt": buffer.getvalue()})
    weights = shared.models.loader.load_namespace_model("pt_1_0_0")
    assert torch.equal(weights["linear.bias"], _weights()["linear.bias"])


def test_pytorch_pickle_with_code_is_refused(models_dir: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"weights": torch.ones(1), "code": _Evil()}, buffer)
    add_model(models_dir, "evil_1_0_0", "pytorch", {"weights.pt": buffer.getvalue()})
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        shared.models.loader.load_namespace_model("evil_1_0_0")
    assert not _Evil.ran


class _Evil:
    ran = False

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_Evil._run, ())

    @staticmethod
    def _run() -> None:
        _Evil.ran = True


def test_onnx_gives_the_file_path(models_dir: Path) -> None:
    folder = add_model(models_dir, "onnx_1_0_0", "onnx", {"model.onnx": b"\x08\x07"})
    model = engine.models.load_namespace_model("onnx_1_0_0")
    assert isinstance(model, OnnxModel) and isinstance(model, str)
    assert Path(model) == (folder / "model.onnx").resolve()
    assert model.session is None  # onnxruntime is not installed here


def test_huggingface_gives_the_folder(models_dir: Path) -> None:
    folder = add_model(models_dir, "hf_1_0_0", "huggingface", {"config.json": b"{}"})
    assert Path(engine.models.load_namespace_model("hf_1_0_0")) == folder.resolve()


def test_unknown_id_lists_the_namespace_models(models_dir: Path) -> None:
    add_model(models_dir, "tiny_1_0_0", "huggingface", {"config.json": b"{}"})
    with pytest.raises(NamespaceModelUnavailable, match="'nope_1_0_0'.*tiny_1_0_0") as err:
        engine.models.load_namespace_model("nope_1_0_0", version="1", device="cpu")
    assert err.value.available == ("tiny_1_0_0",)
    assert issubclass(NamespaceModelUnavailable, RuntimeError)


def test_without_a_models_folder_the_error_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODELS_DIR_ENV, raising=False)
    with pytest.raises(NamespaceModelUnavailable, match="PLUGHOST_MODELS_DIR is not set"):
        engine.models.load_namespace_model("tiny_1_0_0")


def test_a_corrupt_safetensors_file_is_a_clear_error(models_dir: Path) -> None:
    add_model(models_dir, "bad_1_0_0", "safetensors", {"model.safetensors": b"\xff" * 16})
    with pytest.raises(NamespaceModelUnavailable, match="bad_1_0_0.*header length"):
        engine.models.load_namespace_model("bad_1_0_0")


def test_safetensors_as_numpy_without_torch(models_dir: Path) -> None:
    from shared.models.safetensors_mmap import load_safetensors

    folder = add_model(models_dir, "np_1_0_0", "safetensors",
                       {"model.safetensors": save_safetensors(_weights())})
    arrays = load_safetensors(folder / "model.safetensors", "np")
    assert isinstance(arrays["linear.bias"], np.ndarray)
    assert arrays["linear.bias"].tolist() == [1.0, 2.0, 3.0]


def test_a_torchscript_archive_loads_as_a_scripted_module(models_dir: Path) -> None:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 1)), buffer)
    add_model(models_dir, "script_1_0_0", "pytorch", {"model.pt": buffer.getvalue()})
    module = engine.models.load_namespace_model("script_1_0_0")
    assert isinstance(module, torch.jit.ScriptModule)
    assert module(torch.ones(1, 2)).shape == (1, 1)
