"""Namespace models and the plugins that load them in each of Mixpeek's styles, shared by
the model loading tests of both backends (tests/e2e/test_models_runtime*.py).

Models go into the namespace through the real SDK (``CustomModelsApi``); the tiny Hugging Face
model is a BERT of hidden size 8 saved by transformers, once as a namespace model of format
``huggingface`` and once in a Hugging Face cache folder the server shares (PLUGHOST_HF_CACHE).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from container_support import NS, archive, call, deploy_and_wait
from support import LiveServer, sdk_client, tar_gz_bytes, unique_name

HF_ID = "tiny-org/tiny-bert"
HF_REVISION = "0123456789abcdef0123456789abcdef01234567"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "plug", "host"]
ONNX_BYTES = b"\x08\x07\x3a\x00"  # a ModelProto: ir_version 7 and an empty graph


def save_tiny_bert(folder: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=8, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=16, max_position_embeddings=32)
    folder.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    return folder


def build_hf_cache(cache: Path) -> Path:
    """A Hugging Face hub cache holding :data:`HF_ID` (made world-readable for the sandbox)."""
    repo = cache / ("models--" + HF_ID.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(HF_REVISION)
    save_tiny_bert(repo / "snapshots" / HF_REVISION)
    for path in [cache, *cache.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return cache


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}


def model_archives(tmp: Path) -> dict[str, tuple[str, bytes]]:
    """format -> (the name to upload under, the .tar.gz)."""
    import torch
    from safetensors.torch import save

    linear = {"weight": torch.ones(3, 4), "bias": torch.tensor([0.0, 1.0, 2.0])}
    pt = io.BytesIO()
    torch.save({"scale": torch.full((2,), 3.0)}, pt)
    return {
        "safetensors": ("tiny_linear", tar_gz_bytes({"model.safetensors": save(linear)}, "w/")),
        "pytorch": ("tiny_torch", tar_gz_bytes({"weights.pt": pt.getvalue()})),
        "onnx": ("tiny_onnx", tar_gz_bytes({"model.onnx": ONNX_BYTES})),
        "huggingface": ("tiny_bert", tar_gz_bytes(_files(save_tiny_bert(tmp / "bert")), "bert/")),
    }


def upload_models(server: LiveServer, tmp: Path) -> dict[str, str]:
    """Upload one model of each format with the SDK; format -> model_id."""
    from mixpeek.api.custom_models_api import CustomModelsApi

    api = CustomModelsApi(sdk_client(server))
    ids: dict[str, str] = {}
    for model_format, (name, data) in model_archives(tmp).items():
        answer = api.upload_model_namespaces(
            NS, file=data, name=name, version="1.0.0", model_format=model_format
        )
        ids[model_format] = str(answer.model_id)
    assert ids["safetensors"] == "tiny_linear_1_0_0"
    return ids


# -- the plugins ---------------------------------------------------------------------------

# load_namespace_model, from each of the three modules, while the service is constructed
REALTIME_DIRECT = """
import os

import torch
from engine.models import load_namespace_model
from engine.models.loader import load_namespace_model as engine_loader
from shared.models.loader import load_namespace_model as shared_loader
from shared.plugins.inference.serve import BaseInferenceService


class ModelsInferenceService(BaseInferenceService):
    def __init__(self):
        super().__init__()
        weights = load_namespace_model("tiny_linear_1_0_0")
        self.linear = torch.nn.Linear(4, 3)
        self.linear.load_state_dict(weights)
        self.scale = engine_loader("tiny_torch_1_0_0")["scale"]
        self.onnx = shared_loader("tiny_onnx_1_0_0")
        self.bert = load_namespace_model("tiny_bert_1_0_0")

    def run_inference(self, inputs, parameters):
        root = os.environ["PLUGHOST_MODELS_DIR"]
        try:
            load_namespace_model("missing_1_0_0")
            missing = None
        except RuntimeError as exc:
            missing = str(exc)
        writable = os.access(root, os.W_OK)
        return {
            "linear": self.linear(torch.ones(1, 4)).tolist(),
            "scale": self.scale.tolist(),
            "onnx_is_path": isinstance(self.onnx, str) and self.onnx.endswith("model.onnx"),
            "onnx_session": self.onnx.session is not None,
            "bert_config": os.path.isfile(os.path.join(self.bert, "config.json")),
            "models_dir": root,
            "listing": sorted(os.listdir(root)),
            "missing": missing,
            "writable": writable,
        }
"""

# LazyModelMixin (namespace, huggingface format), @lazy_model and load_hf_model (HF cache)
REALTIME_LAZY = """
import torch
from engine.models import LazyModelMixin, lazy_model, load_hf_model, is_hf_model_cached
from shared.plugins.inference.serve import BaseInferenceService


class NamespaceBert(LazyModelMixin):
    model_id = "tiny_bert_1_0_0"
    model_source = "namespace"


class LazyInferenceService(BaseInferenceService):
    def __init__(self):
        super().__init__()
        self.bert = NamespaceBert()
        self._model = None
        self._tokenizer = None

    @lazy_model(model_id="tiny-org/tiny-bert", model_class="AutoModel",
                tokenizer_class="AutoTokenizer")
    def run_inference(self, inputs, parameters):
        model, tokenizer = self.bert.get_model()
        text = inputs.get("text", "hello world")
        with torch.no_grad():
            mixin = model(**tokenizer([text], return_tensors="pt")).last_hidden_state
            decorated = self._model(**self._tokenizer([text], return_tensors="pt"))
        cached = load_hf_model(hf_model_id="tiny-org/tiny-bert", model_class="AutoModel",
                               tokenizer_class="AutoTokenizer", torch_dtype="float32")
        try:
            load_hf_model(hf_model_id="intfloat/multilingual-e5-large-instruct")
            offline = None
        except RuntimeError as exc:
            offline = str(exc)
        return {
            "mixin_dim": mixin.shape[-1],
            "decorated_dim": decorated.last_hidden_state.shape[-1],
            "device": self._device,
            "hidden_size": cached["config"]["hidden_size"],
            "state_dict_keys": len(cached["state_dict"]),
            "tokenizer_class": cached["tokenizer_config"]["class"],
            "cached": is_hf_model_cached("tiny-org/tiny-bert"),
            "offline_error": offline,
        }
"""

# a batch job: get_batch_service (HF cache) and LazyModelMixin with a namespace state_dict
PIPELINE_MODELS = """
import torch
from engine.inference.services import BaseBatchInferenceService
from engine.models.lazy import LazyModelMixin
from engine.plugins.extractors.pipeline import (
    PipelineDefinition, ResourceType, StepDefinition, build_pipeline_steps,
)
from shared.inference.registry import get_batch_service


class LinearStep(LazyModelMixin, BaseBatchInferenceService):
    model_id = "tiny_linear_1_0_0"
    model_source = "namespace"

    def _instantiate_model(self, weights):
        model = torch.nn.Linear(4, 3)
        model.load_state_dict(weights)
        model.to(self._detect_device())
        model.eval()
        return model, None

    def _process_batch(self, batch):
        model, _ = self.get_model()
        with torch.no_grad():
            out = model(torch.ones(len(batch), 4))
        batch["linear"] = out.sum(dim=1).tolist()
        return batch


def build_steps(extractor_request, **kwargs):
    Embedder = get_batch_service("tiny-org/tiny-bert")
    pipeline = PipelineDefinition(name="models", version="v1", steps=[
        StepDefinition(service_class=Embedder, resource_type=ResourceType.CPU,
                       config={"text_column": "text", "output_column_name": "embedding"}),
        StepDefinition(service_class=LinearStep, resource_type=ResourceType.CPU),
    ])
    return {"steps": build_pipeline_steps(pipeline)}
"""


def upload_plugin(server: LiveServer, realtime: str | None, pipeline: str | None = None) -> str:
    from mixpeek.api.custom_plugins_namespace_api import CustomPluginsNamespaceApi

    name = unique_name("mdl")
    data = archive(name, realtime) if pipeline is None else archive(name, realtime, pipeline)
    body = (
        CustomPluginsNamespaceApi(sdk_client(server))
        .upload_plugin_namespaces(NS, file=data, name=name, version="1.0.0")
        .to_dict()
    )
    assert body["validation_status"] == "passed", body
    return str(body["plugin_id"])


def deploy_and_call(server: LiveServer, realtime: str, inputs: dict[str, Any]) -> dict[str, Any]:
    plugin_id = upload_plugin(server, realtime)
    deploy_and_wait(server, plugin_id)
    return call(server, plugin_id, inputs)


def model_loads(server: LiveServer) -> dict[tuple[str, str], float]:
    """``plughost_model_loads_total`` of the default namespace: (model, outcome) -> count."""
    with server.client() as c:
        text = c.get("/metrics").text
    found: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if not line.startswith("plughost_model_loads_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("namespace") == NS:
            found[(labels["model"], labels["outcome"])] = float(line.rsplit(" ", 1)[1])
    return found


def check_direct(answer: dict[str, Any], sandboxed: bool) -> None:
    assert answer["linear"] == [[4.0, 5.0, 6.0]]
    assert answer["scale"] == [3.0, 3.0]
    assert answer["onnx_is_path"] is True and answer["bert_config"] is True
    assert answer["listing"] == [
        "index.json", "tiny_bert_1_0_0", "tiny_linear_1_0_0", "tiny_onnx_1_0_0",
        "tiny_torch_1_0_0",
    ]
    assert "'missing_1_0_0' is not in this namespace" in answer["missing"]
    assert "tiny_linear_1_0_0" in answer["missing"]
    assert answer["writable"] is False
    if sandboxed:
        assert answer["models_dir"] == "/plughost/models"


def check_lazy(answer: dict[str, Any]) -> None:
    assert answer["mixin_dim"] == 8 and answer["decorated_dim"] == 8
    assert answer["device"] == "cpu" and answer["hidden_size"] == 8
    assert answer["state_dict_keys"] > 0 and answer["tokenizer_class"] == "AutoTokenizer"
    assert answer["cached"] is True
    assert "'intfloat/multilingual-e5-large-instruct'" in answer["offline_error"]
    assert "model_format=huggingface" in answer["offline_error"]


# a deployed plugin, and a batch pipeline that uses it through get_batch_service
REALTIME_LENGTH = """
from shared.plugins.inference.serve import BaseInferenceService


class LengthInferenceService(BaseInferenceService):
    def run_inference(self, inputs, parameters):
        return {"length": len(inputs.get("text", "")), "unit": parameters.get("unit")}
"""

PIPELINE_PLUGIN_SERVICE = """
from engine.plugins.extractors.pipeline import (
    PipelineDefinition, ResourceType, StepDefinition, build_pipeline_steps,
)
from shared.inference.registry import get_batch_service


def build_steps(extractor_request, **kwargs):
    Lengths = get_batch_service("__NAME__")
    step = StepDefinition(
        service_class=Lengths, resource_type=ResourceType.API,
        config={"text_column": "text", "output_column_name": "measured",
                "parameters": {"unit": "chars"}},
    )
    return {"steps": build_pipeline_steps(PipelineDefinition("p", "v1", [step]))}
"""


def deployed_plugin_name(server: LiveServer) -> str:
    """Deploy :data:`REALTIME_LENGTH`; its plugin name."""
    plugin_id = upload_plugin(server, REALTIME_LENGTH)
    deploy_and_wait(server, plugin_id)
    return plugin_id.removesuffix("_1_0_0")
