"""Batch pipeline of docs_cli, as the CLI page writes it: relative imports of the manifest and
the processors (in a folder without ``__init__.py``), StepDefinitions, base steps first."""

from __future__ import annotations

from typing import Any

from engine.plugins.extractors.pipeline import (
    PipelineDefinition,
    ResourceType,
    RowCondition,
    StepDefinition,
    build_pipeline_steps,
)

from .manifest import MyParams, metadata
from .processors.core import Marker, MyConfig, MyProcessor


def build_steps(
    extractor_request: Any,
    container: Any | None = None,
    base_steps: list[Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    params = MyParams(**(extractor_request.extractor_config.parameters or {}))
    steps = [
        StepDefinition(
            service_class=MyProcessor,
            resource_type=ResourceType.CPU,
            config=MyConfig(threshold=params.threshold),
            condition=RowCondition.ALWAYS,
        ),
        StepDefinition(service_class=Marker, config={"mark": "cli"}),
    ]
    pipeline = PipelineDefinition(
        name=metadata["feature_extractor_name"], version=metadata["version"], steps=steps
    )
    return {"steps": (base_steps or []) + build_pipeline_steps(pipeline), "prepare": lambda ds: ds}
