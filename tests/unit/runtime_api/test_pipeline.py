"""engine.plugins.extractors.pipeline: conditions, step definitions and built steps."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from engine.plugins.extractors.pipeline import (
    PipelineDefinition,
    PipelineStep,
    ResourceType,
    RowCondition,
    StepDefinition,
    build_pipeline_steps,
)

MIME_TYPES = ["text/plain", "image/png", "video/mp4", "audio/wav", "application/pdf", None]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (RowCondition.ALWAYS, [True, True, True, True, True, True]),
        (RowCondition.IS_TEXT, [True, False, False, False, False, False]),
        (RowCondition.IS_IMAGE, [False, True, False, False, False, False]),
        (RowCondition.IS_VIDEO, [False, False, True, False, False, False]),
        (RowCondition.IS_AUDIO, [False, False, False, True, False, False]),
        (RowCondition.IS_PDF, [False, False, False, False, True, False]),
        (RowCondition.IS_VIDEO_OR_AUDIO, [False, False, True, True, False, False]),
        (RowCondition.IS_VISUAL, [False, True, True, False, False, False]),
    ],
)
def test_conditions_match_on_the_mime_type(condition: RowCondition, expected: list[bool]) -> None:
    assert [condition.matches(m) for m in MIME_TYPES] == expected


def test_mime_type_parameters_and_case_are_ignored() -> None:
    assert RowCondition.IS_TEXT.matches("Text/HTML; charset=utf-8")
    assert not RowCondition.IS_PDF.matches("application/pdfx")


def test_resource_types_are_cpu_gpu_and_api() -> None:
    assert [r.name for r in ResourceType] == ["CPU", "GPU", "API"]


def test_step_definition_defaults() -> None:
    step = StepDefinition(service_class=dict)
    assert (step.resource_type, step.config, step.condition) == (
        ResourceType.CPU,
        None,
        RowCondition.ALWAYS,
    )
    assert (step.enabled, step.concurrency, step.batch_size) == (True, None, None)


class Tagger:
    """A processor in the templates' style: built with its config (and a progress actor)."""

    built = 0

    def __init__(self, config: dict[str, str], progress_actor: Any = "unset") -> None:
        Tagger.built += 1
        self.config = config
        self.progress_actor = progress_actor

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        batch["tag"] = f"{self.config['tag']}:{self.progress_actor}"
        return batch


def _rows() -> pd.DataFrame:
    return pd.DataFrame(
        {"text": ["a", "b", "c"], "mime_type": ["text/plain", "image/png", "text/markdown"]}
    )


def test_rows_failing_the_condition_pass_through_unchanged_in_order() -> None:
    pipeline = PipelineDefinition(
        name="p",
        version="v1",
        steps=[StepDefinition(Tagger, config={"tag": "t"}, condition=RowCondition.IS_TEXT)],
    )
    (step,) = build_pipeline_steps(pipeline)
    result = step(_rows())
    assert list(result["text"]) == ["a", "b", "c"]
    assert list(result["tag"].fillna("-")) == ["t:None", "-", "t:None"]
    assert list(result.index) == [0, 1, 2]


def test_service_is_built_once_with_progress_actor_none() -> None:
    Tagger.built = 0
    pipeline = PipelineDefinition("p", "v1", [StepDefinition(Tagger, config={"tag": "x"})])
    (step,) = build_pipeline_steps(pipeline)
    step(_rows())
    step(_rows())
    assert Tagger.built == 1
    assert step.service.progress_actor is None


def test_steps_expose_resources_batch_size_and_concurrency() -> None:
    steps = build_pipeline_steps(
        PipelineDefinition(
            "p",
            "v1",
            [
                StepDefinition(Tagger, resource_type=ResourceType.GPU),
                StepDefinition(Tagger, resource_type=ResourceType.API, concurrency=3, batch_size=5),
                StepDefinition(Tagger, enabled=False),
            ],
        )
    )
    assert len(steps) == 2
    gpu, api = steps
    assert isinstance(gpu, PipelineStep)
    assert gpu.resources == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert (gpu.batch_size, gpu.concurrency) == (8, 1)
    assert (api.batch_size, api.concurrency) == (5, 3)


def test_dataset_size_caps_the_default_concurrency_at_the_number_of_batches() -> None:
    pipeline = PipelineDefinition("p", "v1", [StepDefinition(Tagger, ResourceType.API)])
    assert build_pipeline_steps(pipeline, dataset_size=20)[0].concurrency == 2
    assert build_pipeline_steps(pipeline)[0].concurrency == 8


def test_a_processor_without_arguments_and_a_plain_function_are_accepted() -> None:
    class NoConfig:
        def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
            return batch.assign(n=len(batch))

    def double(batch: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([batch, batch])

    steps = build_pipeline_steps(
        PipelineDefinition("p", "v1", [StepDefinition(NoConfig), StepDefinition(double)])
    )
    frame = _rows()
    for step in steps:
        frame = step(frame)
    assert list(frame["n"]) == [3] * 6
    assert list(frame.index) == list(range(6))


def test_a_service_changing_the_row_count_puts_its_rows_first() -> None:
    def only_first(batch: pd.DataFrame) -> pd.DataFrame:
        return batch.head(1)

    steps = build_pipeline_steps(
        PipelineDefinition("p", "v1", [StepDefinition(only_first, condition=RowCondition.IS_TEXT)])
    )
    assert list(steps[0](_rows())["text"]) == ["a", "b"]


def test_without_a_mime_type_column_only_always_steps_run() -> None:
    pipeline = PipelineDefinition(
        "p", "v1", [StepDefinition(Tagger, config={"tag": "t"}, condition=RowCondition.IS_TEXT)]
    )
    frame = pd.DataFrame({"text": ["a"]})
    assert "tag" not in build_pipeline_steps(pipeline)[0](frame).columns


# -- the constructor styles of Mixpeek's docs -------------------------------------------------
class WithProgressActor:
    """``(config, progress_actor=None)``: the quick start's processor."""

    def __init__(self, config: Any, progress_actor: Any = "unset") -> None:
        self.seen = {"config": config, "progress_actor": progress_actor}


class ConfigDefaultKwargs:
    """``(config=None, **kwargs)``; hands its keywords on to ``object.__init__``."""

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen = {"config": config, "kwargs": kwargs}


class ConfigKwargs:
    """``(config, **kwargs)``: the LLM examples' processor."""

    def __init__(self, config: Any, **kwargs: Any) -> None:
        self.seen = {"config": config, "kwargs": kwargs}


class ConfigOnly:
    """``(config)``."""

    def __init__(self, config: Any) -> None:
        self.seen = {"config": config}


class NoArguments:
    """``()``: config is dropped."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}


class KeywordOnlyConfig:
    """``(*, config)``."""

    def __init__(self, *, config: Any) -> None:
        self.seen = {"config": config}


@pytest.mark.parametrize(
    ("service_class", "config", "seen"),
    [
        (WithProgressActor, {"k": 1}, {"config": {"k": 1}, "progress_actor": None}),
        (WithProgressActor, None, {"config": None, "progress_actor": None}),
        (ConfigDefaultKwargs, {"k": 1}, {"config": {"k": 1}, "kwargs": {}}),
        (ConfigDefaultKwargs, None, {"config": None, "kwargs": {}}),
        (ConfigKwargs, {"k": 1}, {"config": {"k": 1}, "kwargs": {}}),
        (ConfigKwargs, None, {"config": None, "kwargs": {}}),
        (ConfigOnly, {"k": 1}, {"config": {"k": 1}}),
        (ConfigOnly, None, {"config": None}),
        (NoArguments, {"k": 1}, {}),
        (KeywordOnlyConfig, {"k": 1}, {"config": {"k": 1}}),
    ],
)
def test_each_documented_constructor_gets_only_what_it_accepts(
    service_class: type, config: Any, seen: dict[str, Any]
) -> None:
    from engine.plugins.extractors.pipeline import build_service

    assert build_service(service_class, config).seen == seen  # type: ignore[attr-defined]


def test_a_ready_made_instance_as_service_class_is_used_as_is() -> None:
    class Adder:
        def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
            return batch.assign(added=1)

    instance = Adder()
    (step,) = build_pipeline_steps(PipelineDefinition("p", "v1", [StepDefinition(instance)]))
    assert step.service is instance
    assert list(step(_rows())["added"]) == [1, 1, 1]


def test_an_async_call_service_is_run_to_completion() -> None:
    class AsyncTagger:
        def __init__(self, config: Any = None) -> None:
            self.tag = (config or {}).get("tag", "?")

        async def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
            return batch.assign(tag=self.tag)

    pipeline = PipelineDefinition(
        "p",
        "v1",
        [StepDefinition(AsyncTagger, config={"tag": "a"}, condition=RowCondition.IS_TEXT)],
    )
    (step,) = build_pipeline_steps(pipeline)
    result = step(_rows())
    assert list(result["tag"].fillna("-")) == ["a", "-", "a"]
