"""Manifest of docs_cli, shaped like the Mixpeek CLI page's: a ``metadata`` dict, pydantic
schemas and ``features`` in the documented key style. The folder has no ``__init__.py``."""

from __future__ import annotations

from pydantic import BaseModel, Field


class MyInput(BaseModel):
    text: str


class MyOutput(BaseModel):
    embedding: list[float]


class MyParams(BaseModel):
    threshold: float = Field(default=0.5)


metadata = {
    "feature_extractor_name": "docs_cli",
    "version": "1.0.0",
    "description": "Letter-count embedding (a test plugin written like the CLI page)",
    "category": "text",
}

input_schema = MyInput
output_schema = MyOutput
parameter_schema = MyParams
supported_input_types = ["text"]

features = [
    {
        "feature_name": "my_embedding",
        "feature_type": "embedding",
        "embedding_dim": 3,
        "distance_metric": "cosine",
    },
]

example_input = {"text": "hello"}
