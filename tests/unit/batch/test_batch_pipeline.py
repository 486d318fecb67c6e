"""How a batch worker finds and calls a plugin's builder, and what it accepts as steps.

Each plugin is written to disk the way Mixpeek's docs write it and loaded with
:func:`plughost.batch.pipeline.load_pipeline`, then run over a chunk with ``run_chunk``.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from plughost.batch.pipeline import LoadedPipeline, PipelineLoadError, load_pipeline, run_chunk
from plughost.batch.protocol import ROW_ID

Writer = Callable[[dict[str, str]], Path]
MANIFEST = {"feature_extractor_name": "demo", "version": "1.0.0", "compute_profile": {}}


@pytest.fixture
def write_plugin(tmp_path: Path) -> Iterator[Writer]:
    """Write ``{relative path: source}`` into a fresh plugin folder; imports are undone after."""
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    counter = iter(range(1_000_000))

    def write(files: dict[str, str]) -> Path:
        root = tmp_path / f"plugin{next(counter)}"
        for relative, source in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
        return root

    yield write
    sys.path[:] = saved_path
    for name in set(sys.modules) - saved_modules:
        del sys.modules[name]
    importlib.invalidate_caches()


def chunk(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            ROW_ID: list(range(len(texts))),
            "data": texts,
            "mime_type": ["text/plain"] * len(texts),
        }
    )


def run(pipeline: LoadedPipeline, texts: list[str]) -> pd.DataFrame:
    result = run_chunk(pipeline, chunk(texts))
    assert not result.errors, result.errors
    return result.frame


QUICK_START = """
import hashlib
import pandas as pd


class TextEmbedBatchProcessor:
    def __init__(self, config=None, **kwargs):
        self.text_column = "data"

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        batch = batch.reset_index(drop=True)
        batch["emb"] = [hashlib.sha256(str(t).encode()).digest()[0] for t in batch["data"]]
        return batch


def build_steps(extractor_request=None, container=None,
                base_steps=None, dataset_size=None, content_flags=None):
    processor = TextEmbedBatchProcessor()
    steps = list(base_steps or [])
    steps.append(processor)
    return {"steps": steps, "prepare": lambda ds: ds}


def extract(extractor_request=None, base_steps=None,
            dataset_size=None, content_flags=None):
    raise AssertionError("build_steps comes first")
"""


def test_quick_start_pipeline_with_a_ready_made_instance_runs(write_plugin: Writer) -> None:
    root = write_plugin({"pipeline.py": QUICK_START})
    frame = run(load_pipeline(root, {}, MANIFEST), ["a", "b"])
    assert list(frame["data"]) == ["a", "b"] and frame["emb"].notna().all()


def test_extract_returning_an_object_with_steps_and_prepare_is_used(write_plugin: Writer) -> None:
    root = write_plugin(
        {
            "pipeline.py": """
            def upper(batch):
                return batch.assign(upper=batch["data"].str.upper())


            def extract(extractor_request=None, base_steps=None, dataset_size=None,
                        content_flags=None):
                class PipelineResult:
                    def __init__(self, steps, prepare):
                        self.steps = steps
                        self.prepare = prepare
                return PipelineResult([upper], lambda ds: ds.filter(lambda r: r["data"] != "x"))
            """
        }
    )
    frame = run(load_pipeline(root, {}, MANIFEST), ["a", "x", "b"])
    assert list(frame["upper"]) == ["A", "B"]


SIGNATURE_PROBE = """
SEEN = {{}}


def tag(batch):
    return batch.assign(seen=str(sorted(SEEN)))


def build_steps({signature}):
    SEEN.update({record})
    return {{"steps": [tag]}}
"""


@pytest.mark.parametrize(
    ("signature", "record", "expected"),
    [
        ("extractor_request", "request=extractor_request", ["request"]),
        (
            "request, **kwargs",
            "request=request, **kwargs",
            ["base_steps", "container", "content_flags", "dataset_size", "request"],
        ),
        (
            "extractor_request, container=None, base_steps=None, **kwargs",
            "request=extractor_request, container=container, **kwargs",
            ["container", "content_flags", "dataset_size", "request"],
        ),
        (
            "extractor_request, dataset_size",
            "request=extractor_request, size=dataset_size",
            ["request", "size"],
        ),
        ("*, extractor_request, content_flags=None", "request=extractor_request", ["request"]),
        (
            "**kwargs",
            "**kwargs",
            ["base_steps", "container", "content_flags", "dataset_size", "extractor_request"],
        ),
    ],
)
def test_build_steps_gets_the_request_and_only_the_arguments_it_accepts(
    write_plugin: Writer, signature: str, record: str, expected: list[str]
) -> None:
    root = write_plugin({"pipeline.py": SIGNATURE_PROBE.format(signature=signature, record=record)})
    frame = run(load_pipeline(root, {"k": 1}, MANIFEST, dataset_size=7), ["a"])
    assert frame["seen"].iloc[0] == str(expected)


def test_the_container_and_the_parameters_reach_build_steps(write_plugin: Writer) -> None:
    root = write_plugin(
        {
            "pipeline.py": """
            def build_steps(extractor_request, container=None, **kwargs):
                label = container.label + ":" + str(extractor_request.extractor_config.parameters["k"])

                def step(batch):
                    return batch.assign(label=label)

                return {"steps": [step]}
            """
        }
    )
    container = type("Container", (), {"label": "box"})()
    frame = run(load_pipeline(root, {"k": 5}, MANIFEST, container=container), ["a"])
    assert list(frame["label"]) == ["box:5"]


def test_classes_step_definitions_and_async_steps_are_accepted(write_plugin: Writer) -> None:
    root = write_plugin(
        {
            "pipeline.py": """
            from engine.plugins.extractors.pipeline import RowCondition, StepDefinition


            class Counter:
                def __init__(self, config, progress_actor=None):
                    self.progress_actor = progress_actor

                def __call__(self, batch):
                    return batch.assign(n=batch["data"].str.len())


            class Doubler:
                def __init__(self, config=None, **kwargs):
                    super().__init__(**kwargs)
                    self.factor = (config or {}).get("factor", 2)

                def __call__(self, batch):
                    return batch.assign(doubled=batch["n"] * self.factor)


            async def tagged(batch):
                return batch.assign(tag="async")


            def build_steps(extractor_request, **kwargs):
                definition = StepDefinition(
                    Doubler, config={"factor": 3}, condition=RowCondition.IS_TEXT
                )
                return {"steps": [Counter, definition, tagged]}
            """
        }
    )
    frame = run(load_pipeline(root, {}, MANIFEST), ["ab", "abcd"])
    assert list(frame["n"]) == [2, 4]
    assert list(frame["doubled"]) == [6, 12]
    assert list(frame["tag"]) == ["async", "async"]


def test_an_instance_with_an_async_call_is_run_to_completion(write_plugin: Writer) -> None:
    root = write_plugin(
        {
            "pipeline.py": """
            import asyncio


            class AsyncStep:
                async def __call__(self, batch):
                    await asyncio.sleep(0)
                    return batch.assign(done=True)


            def build_steps(extractor_request, **kwargs):
                return [AsyncStep()]
            """
        }
    )
    assert list(run(load_pipeline(root, {}, MANIFEST), ["a"])["done"]) == [True]


@pytest.mark.parametrize(
    "path_source",
    ["make_steps", "'make_steps'", "'pipeline.make_steps'", "'plugins.demo.pipeline:make_steps'"],
)
def test_a_module_level_extractor_definition_names_the_builder(
    write_plugin: Writer, path_source: str
) -> None:
    root = write_plugin(
        {
            "pipeline.py": f"""
            from shared.collection.features.extractors.models import ExtractorDefinition


            def marked(batch):
                return batch.assign(via="definition")


            def make_steps(extractor_request, container=None, **kwargs):
                return {{"steps": [marked]}}


            extractor_definition = ExtractorDefinition(
                name="demo", version="1.0.0", extractor_function_path={path_source}
            )
            """
        }
    )
    assert list(run(load_pipeline(root, {}, MANIFEST), ["a"])["via"]) == ["definition"]


def test_cli_style_plugin_with_relative_imports_and_no_init_files_loads(
    write_plugin: Writer,
) -> None:
    root = write_plugin(
        {
            "manifest.py": """
            from pydantic import BaseModel, Field

            class MyParams(BaseModel):
                threshold: float = Field(default=0.5)

            metadata = {"feature_extractor_name": "my_extractor", "version": "1.0.0"}
            """,
            "processors/core.py": """
            from dataclasses import dataclass

            @dataclass
            class MyConfig:
                threshold: float = 0.5

            class MyProcessor:
                def __init__(self, config: MyConfig, progress_actor=None):
                    self.config = config

                def __call__(self, batch):
                    return batch.assign(over=batch["data"].str.len() > self.config.threshold)
            """,
            "pipeline.py": """
            from engine.plugins.extractors.pipeline import (
                PipelineDefinition, ResourceType, RowCondition, StepDefinition,
                build_pipeline_steps,
            )
            from .manifest import MyParams, metadata
            from .processors.core import MyConfig, MyProcessor

            def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
                params = MyParams(**(extractor_request.extractor_config.parameters or {}))
                steps = [
                    StepDefinition(
                        service_class=MyProcessor,
                        resource_type=ResourceType.CPU,
                        config=MyConfig(threshold=params.threshold),
                        condition=RowCondition.IS_TEXT,
                    ),
                ]
                pipeline = PipelineDefinition(
                    name=metadata["feature_extractor_name"], version=metadata["version"],
                    steps=steps,
                )
                return {"steps": (base_steps or []) + build_pipeline_steps(pipeline),
                        "prepare": lambda ds: ds}
            """,
        }
    )
    assert not any(root.rglob("__init__.py"))
    frame = run(load_pipeline(root, {"threshold": 2}, MANIFEST), ["a", "abc"])
    assert list(frame["over"]) == [False, True]


def test_a_pipeline_without_any_builder_is_refused(write_plugin: Writer) -> None:
    root = write_plugin({"pipeline.py": "def helper(batch):\n    return batch\n"})
    with pytest.raises(PipelineLoadError, match="neither build_steps.*nor extract"):
        load_pipeline(root, {}, MANIFEST)


def test_an_extractor_definition_naming_nothing_is_refused(write_plugin: Writer) -> None:
    root = write_plugin(
        {
            "pipeline.py": """
            from shared.collection.features.extractors.models import ExtractorDefinition
            extractor_definition = ExtractorDefinition("demo", "1", "pipeline.missing")
            """
        }
    )
    with pytest.raises(PipelineLoadError, match="'pipeline.missing' names nothing"):
        load_pipeline(root, {}, MANIFEST)


def test_a_step_that_is_not_callable_is_refused(write_plugin: Writer) -> None:
    root = write_plugin(
        {"pipeline.py": "def build_steps(extractor_request):\n    return {'steps': [42]}\n"}
    )
    with pytest.raises(PipelineLoadError, match="step 42 is not callable"):
        load_pipeline(root, {}, MANIFEST)


def test_a_step_reading_a_missing_column_fails_with_its_own_key_error(
    write_plugin: Writer,
) -> None:
    root = write_plugin(
        {
            "pipeline.py": """
            def reads_text(batch):
                return batch.assign(n=batch["text"].str.len())

            def build_steps(extractor_request, **kwargs):
                return {"steps": [reads_text]}
            """
        }
    )
    result = run_chunk(load_pipeline(root, {}, MANIFEST), chunk(["a"]))
    assert [e["message"] for e in result.errors] == ["KeyError: 'text'"]
