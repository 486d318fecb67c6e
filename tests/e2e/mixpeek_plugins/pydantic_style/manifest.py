"""Manifest of pydantic_style (a ``metadata`` dict with pydantic schemas)."""

from __future__ import annotations

from pydantic import BaseModel, Field

metadata = {
    "feature_extractor_name": "pydantic_style",
    "version": "1.0.0",
    "description": "Keyword spotting in text (a test plugin written like Mixpeek's docs).",
    "category": "text",
}


class InputSchema(BaseModel):
    """One text to search."""

    text: str = Field(..., description="Text to search for keywords")


class OutputSchema(BaseModel):
    """The keywords found."""

    keywords: list[str] = Field(..., description="Keywords present in the text, in list order")
    count: int = Field(..., description="How many keywords were found")


class ParameterSchema(BaseModel):
    """Per-request options."""

    keywords: list[str] = Field(default_factory=lambda: ["cat", "dog"])
    case_sensitive: bool = False


input_schema = InputSchema
output_schema = OutputSchema
parameter_schema = ParameterSchema

supported_input_types = ["text"]

features = [{"feature_type": "text", "feature_name": "keywords"}]

dependencies: list[str] = []

serve_config = {"num_replicas": 1}

example_input = {"text": "a cat"}
