"""Batch pipeline of docs_factory: only ``extract``, returning an object with ``steps`` and
``prepare``; its step's class takes ``(config, **kwargs)``."""

from engine.plugins.extractors.pipeline import (
    PipelineDefinition,
    ResourceType,
    StepDefinition,
    build_pipeline_steps,
)


class LengthProcessor:
    def __init__(self, config, **kwargs):
        self.scale = config.get("scale", 1)
        self.extra = kwargs

    def __call__(self, batch):
        batch["length"] = [len(str(t)) * self.scale for t in batch["text"]]
        batch["extra_kwargs"] = len(self.extra)
        return batch


class PipelineResult:
    def __init__(self, steps, prepare):
        self.steps = steps
        self.prepare = prepare


def extract(extractor_request=None, base_steps=None, dataset_size=None, content_flags=None):
    scale = (extractor_request.extractor_config.parameters or {}).get("scale", 1)
    pipeline = PipelineDefinition(
        name="docs_factory",
        version="1.0.0",
        steps=[
            StepDefinition(
                service_class=LengthProcessor,
                resource_type=ResourceType.API,
                config={"scale": scale},
            )
        ],
    )
    steps = list(base_steps or []) + build_pipeline_steps(pipeline, dataset_size=dataset_size)
    return PipelineResult(steps, lambda ds: ds.filter(lambda row: row["text"] != "skip"))
