"""Batch pipeline of attr_style: StepDefinitions with row conditions in a PipelineDefinition.

Text rows get their word count and length tag, image rows a tag, and every row a stamp; a row
that fails a step's condition passes through that step unchanged.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from engine.plugins.extractors.pipeline import (
    PipelineDefinition,
    ResourceType,
    RowCondition,
    StepDefinition,
    build_pipeline_steps,
)
from shared.plugins.inference.batch import BaseBatchInferenceService

from .processors.tagging import image_tag, length_tag
from .processors.text import word_count


class TextStatsBatch(BaseBatchInferenceService):
    """Adds ``word_count`` and ``length_tag`` from the ``text`` column."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = dict(config or {})

    def _process_batch(self, batch: pd.DataFrame) -> pd.DataFrame:
        batch = batch.copy()
        batch["word_count"] = [word_count(str(t)) for t in batch["text"]]
        batch["length_tag"] = [length_tag(str(t)) for t in batch["text"]]
        return batch


class ImageTagger:
    """Adds ``image_tag`` from the ``url`` column; takes the progress actor Mixpeek passes."""

    def __init__(self, config: dict[str, Any], progress_actor: Any = None) -> None:
        self.prefix = str(config.get("prefix", "img"))
        self.progress_actor = progress_actor

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        batch = batch.copy()
        batch["image_tag"] = [image_tag(str(u), self.prefix) for u in batch["url"]]
        return batch


class Stamper:
    """Adds the ``stamp`` column to every row."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.stamp = str(config["stamp"])

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        batch = batch.copy()
        batch["stamp"] = self.stamp
        return batch


class Disabled:
    """A step switched off in the definition; it must never run."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        raise RuntimeError("a disabled step was built")


def build_steps(
    extractor_request: Any,
    container: Any = None,
    base_steps: list[Any] | None = None,
    dataset_size: int | None = None,
    content_flags: Any = None,
) -> dict[str, Any]:
    """The pipeline's steps (after any ``base_steps``) and an identity prepare."""
    params = dict(extractor_request.extractor_config.parameters or {})
    pipeline = PipelineDefinition(
        name="attr_style",
        version="v1",
        steps=[
            StepDefinition(
                service_class=TextStatsBatch,
                resource_type=ResourceType.CPU,
                condition=RowCondition.IS_TEXT,
                batch_size=64,
            ),
            StepDefinition(
                service_class=ImageTagger,
                resource_type=ResourceType.CPU,
                config={"prefix": params.get("image_prefix", "img")},
                condition=RowCondition.IS_IMAGE,
                concurrency=1,
            ),
            StepDefinition(
                service_class=Stamper,
                config={"stamp": params.get("stamp", "attr_style")},
                condition=RowCondition.ALWAYS,
            ),
            StepDefinition(service_class=Disabled, enabled=False),
        ],
    )
    steps = build_pipeline_steps(pipeline, dataset_size=dataset_size)
    return {"steps": [*(base_steps or []), *steps], "prepare": lambda ds: ds}
