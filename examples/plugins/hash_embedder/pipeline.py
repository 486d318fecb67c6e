"""Batch pipeline of hash_embedder: 16-dimensional hash embeddings of the ``text`` column.

``prepare`` gets the dataset (Ray Data on Mixpeek, plughost's stand-in locally) and fills
missing text with the empty string so every row gets an embedding; the one step is a
batch service built from a ``StepDefinition``. The realtime service (realtime.py) gives the
same vector for the same text.
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
from processors.hashing import hash_embedding
from shared.plugins.inference.batch import BaseBatchInferenceService

EMBEDDING_DIM = 16
TEXT_COLUMN = "text"
OUTPUT_COLUMN = "hash_embedding"


def _fill_missing_text(batch: pd.DataFrame, column: str) -> pd.DataFrame:
    batch = batch.copy()
    batch[column] = batch[column].where(batch[column].notna(), "").astype(str)
    return batch


class HashEmbeddingBatch(BaseBatchInferenceService):
    """Adds ``hash_embedding`` computed from the configured text column."""

    def _process_batch(self, batch: pd.DataFrame) -> pd.DataFrame:
        column = (self.config or {}).get("text_column", TEXT_COLUMN)
        batch = batch.copy()
        batch[OUTPUT_COLUMN] = [hash_embedding(str(t), EMBEDDING_DIM) for t in batch[column]]
        return batch


def build_steps(
    extractor_request: Any = None,
    container: Any = None,
    base_steps: list[Any] | None = None,
    dataset_size: int | None = None,
    content_flags: Any = None,
) -> dict[str, Any]:
    """The batch steps (any ``base_steps`` first, then the embedding) and the prepare hook.

    The text column is ``input_mappings["text"]`` when the request maps one, else ``text``.
    """
    config = getattr(extractor_request, "extractor_config", None)
    mappings = dict(getattr(config, "input_mappings", None) or {})
    column = str(mappings.get("text") or TEXT_COLUMN)
    pipeline = PipelineDefinition(
        name="hash_embedder",
        version="v1",
        steps=[
            StepDefinition(
                service_class=HashEmbeddingBatch,
                resource_type=ResourceType.CPU,
                config={"text_column": column},
            )
        ],
    )

    def prepare(ds: Any) -> Any:
        return ds.map_batches(
            _fill_missing_text, batch_format="pandas", fn_kwargs={"column": column}
        )

    steps = build_pipeline_steps(pipeline, dataset_size=dataset_size)
    return {"steps": [*(base_steps or []), *steps], "prepare": prepare}
