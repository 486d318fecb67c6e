"""Batch pipeline of docs_definition: no ``build_steps``; a module-level
``extractor_definition`` names the builder, whose steps are a class (built with no
arguments) and an ``async`` function."""

import asyncio

from shared.collection.features.extractors.models import ExtractorDefinition


class Upper:
    def __init__(self):
        self.suffix = "!"

    def __call__(self, batch):
        batch["upper"] = [str(t).upper() + self.suffix for t in batch["text"]]
        return batch


async def annotate(batch):
    await asyncio.sleep(0)
    batch["annotated"] = True
    return batch


def make_steps(request, **kwargs):
    return {"steps": [Upper, annotate]}


extractor_definition = ExtractorDefinition(
    name="docs_definition",
    version="1.0.0",
    extractor_function_path=make_steps,
)
