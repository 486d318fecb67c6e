"""``get_batch_service(name)``: a batch service class to use as a pipeline step.

Mixpeek's registry names its built-in models; plughost has none built in, so a name is
looked up among what this namespace has:

1. a namespace model, by id or name (:mod:`shared.models.index`);
2. a Hugging Face model id found in the shared cache or as a ``huggingface`` namespace
   model (:mod:`shared.models.hf`);
3. a plugin deployed in the namespace (by name, plugin id or deployment name), asked of the
   server: each row becomes one call of it (:mod:`.plugin_service`). The server is asked
   through the container, so this works in a batch job's ``build_steps`` and in a realtime
   handler, not while a realtime service is constructed.

The class returned derives from ``BaseBatchInferenceService`` and ``LazyModelMixin``. For a
Hugging Face model (a namespace model of format ``huggingface`` included) it is a text
embedder: it reads the column ``config.text_column`` (default ``data``, Mixpeek's content
column), and writes the mean-pooled last hidden state of each row into
``config.output_column_name`` (default ``embedding``); ``config`` may be an object or a dict.
For the other formats the class only loads the model (``self.get_model()``): subclass it and
implement ``_process_batch``. An unknown name raises :class:`BatchServiceNotFound` listing
what this namespace has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..models.hf import is_hf_model_cached
from ..models.index import ModelEntry, read_index
from ..models.lazy import HUGGINGFACE, NAMESPACE, LazyModelMixin
from ..plugins.inference.batch import BaseBatchInferenceService
from .plugin_service import PluginBatchService, plugin_deployed, plugin_service

if TYPE_CHECKING:
    import pandas as pd


class BatchServiceNotFound(LookupError):
    """No namespace model or offline Hugging Face model has that name."""


def _setting(config: Any, key: str, default: str) -> str:
    if isinstance(config, dict):
        value = config.get(key)
    else:
        value = getattr(config, key, None)
    return str(value) if value else default


class ModelBatchService(LazyModelMixin, BaseBatchInferenceService):
    """The base of what :func:`get_batch_service` returns (see the module)."""

    embeds_text = False

    def _process_batch(self, batch: pd.DataFrame) -> pd.DataFrame:
        if not self.embeds_text:
            raise NotImplementedError(
                f"the batch service of model {self.model_id!r} only loads the model: subclass "
                "it and implement _process_batch(batch) with self.get_model()"
            )
        import torch

        model, tokenizer = self.get_model()
        column = _setting(self.config, "text_column", "data")
        output = _setting(self.config, "output_column_name", "embedding")
        texts = ["" if v is None else str(v) for v in batch[column].tolist()]
        inputs = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        inputs = {key: value.to(self._device or "cpu") for key, value in inputs.items()}
        with torch.no_grad():
            hidden = model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        batch = batch.copy()
        batch[output] = pooled.float().cpu().tolist()
        return batch


def _service_for(model_id: str, source: str, embeds: bool) -> type[ModelBatchService]:
    attrs = {"model_id": model_id, "model_source": source, "embeds_text": embeds}
    return type(f"BatchService[{model_id}]", (ModelBatchService,), attrs)


def _namespace_match(name: str, index: dict[str, ModelEntry]) -> ModelEntry | None:
    if name in index:
        return index[name]
    named = [entry for entry in index.values() if entry.name == name]
    return max(named, key=lambda e: e.version) if named else None


def get_batch_service(name: str) -> type[ModelBatchService | PluginBatchService]:
    """The batch service class of ``name`` (see the module)."""
    index = read_index()
    entry = _namespace_match(str(name), index)
    if entry is not None:
        embeds = entry.model_format == "huggingface"
        return _service_for(entry.model_id, NAMESPACE, embeds)
    if is_hf_model_cached(str(name)):
        return _service_for(str(name), HUGGINGFACE, True)
    if plugin_deployed(str(name)):
        return plugin_service(str(name))
    listed = ", ".join(sorted(index)) or "none"
    raise BatchServiceNotFound(
        f"no batch service {name!r} on this plughost server: it has no built-in models and "
        f"no plugin of that name is deployed in this namespace; the namespace's models are: "
        f"{listed}; a Hugging Face model id works when it is in the server's Hugging Face "
        "cache (PLUGHOST_HF_CACHE) or uploaded as a namespace model of format huggingface"
    )
