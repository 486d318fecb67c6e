"""shared.collection.features.extractors.models.ExtractorDefinition."""

from __future__ import annotations

from typing import Any

from shared.collection.features.extractors.models import ExtractorDefinition


def build_steps(extractor_request: Any, **kwargs: Any) -> dict[str, Any]:
    return {"steps": []}


def test_extractor_definition_is_a_plain_record() -> None:
    definition = ExtractorDefinition(name="demo", version="v1", extractor_function_path=build_steps)
    assert definition.requires_file_resolution is False
    assert definition.extractor_function_path is build_steps
    assert ExtractorDefinition("demo", "v1", "pipeline.build_steps", True).requires_file_resolution
