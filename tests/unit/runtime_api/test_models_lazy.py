"""load_hf_model, is_hf_model_cached, LazyModelMixin, @lazy_model and get_batch_service,
offline, against a tiny Hugging Face cache and namespace folder built here."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import engine.models
import engine.models.lazy
import pandas as pd
import pytest
import torch
from engine.inference.services import BaseBatchInferenceService as EngineBase
from safetensors.torch import save as save_safetensors
from shared.inference.registry import BatchServiceNotFound, get_batch_service
from shared.models.hf import HF_CACHE_ENV, HFModelNotCached
from shared.models.index import MODELS_DIR_ENV
from shared.plugins.inference.batch import BaseBatchInferenceService

from .models_layout import add_model
from .tiny_hf import build_hf_cache, save_tiny_bert

HF_ID = "tiny-org/tiny-bert"


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("hf")
    build_hf_cache(cache, HF_ID)
    return cache


@pytest.fixture
def env(hf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ns"
    root.mkdir()
    (root / "index.json").write_text('{"models": {}}')
    monkeypatch.setenv(MODELS_DIR_ENV, str(root))
    monkeypatch.setenv(HF_CACHE_ENV, str(hf_cache))
    return root


def test_engine_names_are_the_shared_objects() -> None:
    assert EngineBase is BaseBatchInferenceService
    assert engine.models.LazyModelMixin is engine.models.lazy.LazyModelMixin
    assert engine.models.lazy_model is engine.models.lazy.lazy_model


def test_load_hf_model_returns_the_documented_dict(env: Path) -> None:
    from transformers import AutoConfig, AutoModel

    cached = engine.models.load_hf_model(
        hf_model_id=HF_ID, model_class="AutoModel", tokenizer_class="AutoTokenizer",
        torch_dtype="float32",
    )
    assert {"state_dict", "config", "tokenizer_config", "model_class", "hf_model_id"} <= set(cached)
    assert cached["hf_model_id"] == HF_ID and cached["model_class"] == "AutoModel"
    assert cached["tokenizer_config"]["class"] == "AutoTokenizer"
    config = AutoConfig.for_model(**cached["config"])
    model = AutoModel.from_config(config)
    model.load_state_dict(cached["state_dict"], strict=False)
    assert config.hidden_size == 8
    assert Path(cached["tokenizer_config"]["tokenizer_dir"], "vocab.txt").is_file()


def test_load_hf_model_converts_the_dtype(env: Path) -> None:
    cached = engine.models.load_hf_model(hf_model_id=HF_ID, torch_dtype="float16")
    assert {t.dtype for t in cached["state_dict"].values() if t.is_floating_point()} == {
        torch.float16
    }


def test_a_model_missing_offline_names_it_and_how_to_add_it(env: Path) -> None:
    assert engine.models.is_hf_model_cached(HF_ID)
    assert not engine.models.is_hf_model_cached("intfloat/multilingual-e5-small")
    with pytest.raises(HFModelNotCached, match=r"'intfloat/multilingual-e5-small'.*"
                       r"model_format=huggingface and name='multilingual_e5_small'"):
        engine.models.load_hf_model(hf_model_id="intfloat/multilingual-e5-small")


def test_a_huggingface_namespace_model_stands_in_for_the_hub_id(
    env: Path, tmp_path: Path
) -> None:
    folder = save_tiny_bert(tmp_path / "upload")
    add_model(env, "multilingual_e5_small_1_0_0", "huggingface",
              {p.name: p.read_bytes() for p in folder.iterdir()},
              name="multilingual_e5_small")
    assert engine.models.is_hf_model_cached("intfloat/multilingual-e5-small")
    cached = engine.models.load_hf_model(hf_model_id="intfloat/multilingual-e5-small")
    assert cached["config"]["hidden_size"] == 8


class HubEmbedder(engine.models.LazyModelMixin, BaseBatchInferenceService):
    model_id = HF_ID
    model_class = "AutoModel"
    tokenizer_class = "AutoTokenizer"
    torch_dtype = "float32"

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config

    def _process_batch(self, batch: pd.DataFrame) -> pd.DataFrame:
        model, tokenizer = self.get_model()
        inputs = tokenizer(batch["data"].tolist(), return_tensors="pt", padding=True)
        with torch.no_grad():
            batch["embedding"] = model(**inputs).last_hidden_state.mean(dim=1).tolist()
        return batch


def test_lazy_mixin_loads_on_first_batch_once(env: Path) -> None:
    service = HubEmbedder({"x": 1})
    assert service._model is None  # nothing loaded at construction
    out = service(pd.DataFrame({"data": ["hello world", "plug host"]}))
    assert len(out["embedding"][0]) == 8
    first = service.model
    service(pd.DataFrame({"data": ["hello"]}))
    assert service.model is first and service.tokenizer is not None
    assert service._detect_device() == "cpu"


class NamespaceLinear(engine.models.LazyModelMixin, BaseBatchInferenceService):
    model_id = "linear_1_0_0"
    model_source = "namespace"

    def _instantiate_model(self, weights: Any) -> tuple[Any, None]:
        model = torch.nn.Linear(4, 3)
        model.load_state_dict(weights)
        model.to(self._detect_device())
        model.eval()
        return model, None


def test_lazy_mixin_with_a_namespace_state_dict(env: Path) -> None:
    weights = {"weight": torch.ones(3, 4), "bias": torch.zeros(3)}
    add_model(env, "linear_1_0_0", "safetensors", {"m.safetensors": save_safetensors(weights)})
    model, tokenizer = NamespaceLinear().get_model()
    assert tokenizer is None
    assert model(torch.ones(1, 4)).tolist() == [[4.0, 4.0, 4.0]]


def test_lazy_mixin_refuses_a_state_dict_without_an_architecture(env: Path) -> None:
    add_model(env, "linear_1_0_0", "safetensors",
              {"m.safetensors": save_safetensors({"w": torch.ones(1)})})

    class Plain(engine.models.LazyModelMixin):
        model_id = "linear_1_0_0"
        model_source = "namespace"

    with pytest.raises(NotImplementedError, match="override _instantiate_model"):
        Plain().get_model()


class Decorated:
    def __init__(self, config: Any = None) -> None:
        self.config = config
        self._model = None
        self._tokenizer = None

    @engine.models.lazy_model(model_id=HF_ID, model_class="AutoModel",
                              tokenizer_class="AutoTokenizer")
    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        inputs = self._tokenizer(batch["data"].tolist(), return_tensors="pt", padding=True)
        batch["embedding"] = self._model(**inputs).last_hidden_state.mean(dim=1).tolist()
        return batch

    @engine.models.lazy.lazy_model(model_id=HF_ID)
    async def run_inference(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> str:
        return str(self._device)


def test_lazy_model_decorator_sets_model_tokenizer_and_device(env: Path) -> None:
    step = Decorated()
    out = step(pd.DataFrame({"data": ["hello"]}))
    assert len(out["embedding"][0]) == 8
    assert step._device == "cpu" and step._tokenizer is not None
    assert asyncio.run(Decorated().run_inference({}, {})) == "cpu"


def test_get_batch_service_for_a_hub_model_embeds_text(env: Path) -> None:
    service_class = get_batch_service(HF_ID)
    assert issubclass(service_class, BaseBatchInferenceService)
    step = service_class({"text_column": "text", "output_column_name": "vec"})
    out = step(pd.DataFrame({"text": ["hello world", "plug"]}))
    assert [len(v) for v in out["vec"]] == [8, 8]


def test_get_batch_service_for_a_namespace_model(env: Path) -> None:
    add_model(env, "linear_1_0_0", "safetensors",
              {"m.safetensors": save_safetensors({"w": torch.ones(1)})}, name="linear")
    service_class = get_batch_service("linear")
    assert service_class.model_id == "linear_1_0_0"
    with pytest.raises(NotImplementedError, match="subclass it"):
        service_class(None)(pd.DataFrame({"data": ["x"]}))


def test_get_batch_service_unknown_lists_what_there_is(env: Path) -> None:
    add_model(env, "linear_1_0_0", "safetensors", {"m.safetensors": b""}, name="linear")
    with pytest.raises(BatchServiceNotFound, match="'openai/whisper-large-v3'.*linear_1_0_0"):
        get_batch_service("openai/whisper-large-v3")
