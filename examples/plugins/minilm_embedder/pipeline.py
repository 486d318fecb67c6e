"""Batch pipeline of minilm_embedder: all-MiniLM-L6-v2 embeddings of the ``text`` column.

``prepare`` fills missing text with the empty string; the one step is a batch service whose
model loads once per worker (the service is built once per worker and keeps the encoder).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from engine.plugins.extractors.pipeline import (
    PipelineDefinition,
    ResourceType,
    StepDefinition,
    build_pipeline_steps,
)
from shared.plugins.inference.batch import BaseBatchInferenceService

TEXT_COLUMN = "text"
OUTPUT_COLUMN = "minilm_embedding"
_ENCODERS: dict[str, Any] = {}


def _encoder() -> Any:
    """The process-wide encoder, loaded on first use (once per worker process)."""
    if "model" not in _ENCODERS:
        from processors.model import MiniLMEncoder

        _ENCODERS["model"] = MiniLMEncoder()
    return _ENCODERS["model"]


def _fill_missing_text(batch: pd.DataFrame, column: str) -> pd.DataFrame:
    batch = batch.copy()
    batch[column] = batch[column].where(batch[column].notna(), "").astype(str)
    return batch


class MiniLMEmbeddingBatch(BaseBatchInferenceService):
    """Adds ``minilm_embedding`` (384 floats, unit length unless normalize is false)."""

    def _process_batch(self, batch: pd.DataFrame) -> pd.DataFrame:
        config = self.config or {}
        texts = [str(t) for t in batch[config.get("text_column", TEXT_COLUMN)]]
        batch = batch.copy()
        batch[OUTPUT_COLUMN] = _encoder().encode(texts, normalize=config.get("normalize", True))
        return batch


def build_steps(
    extractor_request: Any = None,
    container: Any = None,
    base_steps: list[Any] | None = None,
    dataset_size: int | None = None,
    content_flags: Any = None,
) -> dict[str, Any]:
    """The batch steps (any ``base_steps`` first, then the embedding) and the prepare hook.

    ``parameters.normalize`` (default true) and ``input_mappings["text"]`` are honoured."""
    config = getattr(extractor_request, "extractor_config", None)
    mappings = dict(getattr(config, "input_mappings", None) or {})
    params = dict(getattr(config, "parameters", None) or {})
    column = str(mappings.get("text") or TEXT_COLUMN)
    pipeline = PipelineDefinition(
        name="minilm_embedder",
        version="1.0.0",
        steps=[
            StepDefinition(
                service_class=MiniLMEmbeddingBatch,
                resource_type=ResourceType.CPU,
                config={"text_column": column, "normalize": bool(params.get("normalize", True))},
            )
        ],
    )

    def prepare(ds: Any) -> Any:
        return ds.map_batches(
            _fill_missing_text, batch_format="pandas", fn_kwargs={"column": column}
        )

    steps = build_pipeline_steps(pipeline, dataset_size=dataset_size)
    return {"steps": [*(base_steps or []), *steps], "prepare": prepare}
