"""Worker side of a batch job: load pipeline.py once, then run chunks through it.

For each chunk: ``prepare(dataset)`` on a :class:`~plughost.batch.dataset.LocalDataset`
(lazy; runs when read), then the steps in order on batches of ``batch_size`` rows. A batch
whose steps raise becomes an error entry (its first and last input row and the plugin's
message) and leaves no output rows; the server decides whether that fails the job.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np
import pandas as pd

from plughost.batch.dataset import LocalDataset
from plughost.batch.protocol import ROW_ID

Step = Callable[[Any], Any]
DEFAULT_BATCH_SIZE = 64


class PipelineLoadError(Exception):
    """pipeline.py is missing, or defines neither build_steps nor extract, or returned junk."""


@dataclass
class LoadedPipeline:
    steps: list[Step]
    prepare: Callable[[Any], Any] | None
    batch_size: int


@dataclass
class ChunkResult:
    frame: pd.DataFrame
    errors: list[dict[str, Any]]
    limit: int | None


def load_pipeline_module(plugin_dir: Path) -> ModuleType:
    """Import ``plugin_dir/pipeline.py`` as ``plughost_plugin.pipeline`` with the plugin folder
    and the runtime API on ``sys.path`` (the same import rules as realtime.py)."""
    from plughost.replica.loader import create_plugin_package, install_import_paths

    path = plugin_dir / "pipeline.py"
    if not path.is_file():
        raise PipelineLoadError(f"plugin has no pipeline.py in {plugin_dir}")
    install_import_paths(plugin_dir)
    package = create_plugin_package(plugin_dir)
    spec = importlib.util.spec_from_file_location(f"{package.__name__}.pipeline", path)
    if spec is None or spec.loader is None:
        raise PipelineLoadError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


BUILDER_NAMES = ("build_steps", "extract")
DEFINITION_NAME = "extractor_definition"


def find_builder(module: ModuleType, package: str | None = None) -> Callable[..., Any]:
    """The function that builds the steps: ``build_steps``, else ``extract``, else the
    ``extractor_function_path`` of a module-level ``extractor_definition`` (the callable
    itself, or a dotted path such as ``"pipeline.build_steps"``, looked up in the plugin
    package ``package`` and then as a top-level module)."""
    for name in BUILDER_NAMES:
        builder = getattr(module, name, None)
        if callable(builder):
            return cast(Callable[..., Any], builder)
    definition = getattr(module, DEFINITION_NAME, None)
    target = getattr(definition, "extractor_function_path", None)
    if callable(target):
        return cast(Callable[..., Any], target)
    if isinstance(target, str) and target:
        return _resolve_path(target, module, package)
    raise PipelineLoadError(
        "pipeline.py defines neither build_steps(...) nor extract(...)"
        f" nor an {DEFINITION_NAME} naming one"
    )


def _resolve_path(path: str, module: ModuleType, package: str | None) -> Callable[..., Any]:
    """``"[modules.]function"`` of an extractor_definition, as a callable: the function of
    pipeline.py itself when no module is named, else of the named module, tried inside the
    plugin package (full dotted name, then its last part) and then as a top-level module."""
    module_name, _, attribute = path.replace(":", ".").rpartition(".")
    names: list[str] = []
    if module_name:
        last = module_name.rpartition(".")[2]
        if package:
            names += [f"{package}.{module_name}", f"{package}.{last}"]
        names.append(module_name)
    candidates = [module] if not module_name else []
    for name in names:
        try:
            candidates.append(importlib.import_module(name))
        except ImportError:
            continue
    for candidate in candidates:
        found = getattr(candidate, attribute, None)
        if callable(found):
            return cast(Callable[..., Any], found)
    raise PipelineLoadError(f"{DEFINITION_NAME}.extractor_function_path {path!r} names nothing")


def call_builder(
    builder: Callable[..., Any],
    request: Any,
    dataset_size: int | None,
    container: Any = None,
) -> Any:
    """Call ``build_steps``/``extract`` with what its signature accepts.

    The request goes to the first positional parameter whatever its name (or to
    ``extractor_request=`` when that is keyword-only); ``container``, ``base_steps`` (an empty
    list), ``dataset_size`` and ``content_flags`` (None) go by keyword to the parameters it
    names, or all of them to ``**kwargs``.
    """
    offered = {
        "container": container,
        "base_steps": [],
        "dataset_size": dataset_size,
        "content_flags": None,
    }
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return builder(request)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = dict(offered)
    else:
        kwargs = {k: v for k, v in offered.items() if k in params}
    positional = [
        p
        for p in params.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if positional:
        kwargs.pop(positional[0].name, None)
        return builder(request, **kwargs)
    if "extractor_request" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return builder(extractor_request=request, **kwargs)
    return builder(**kwargs)


def load_pipeline(
    plugin_dir: Path,
    parameters: Mapping[str, Any],
    manifest: Mapping[str, Any],
    dataset_size: int | None = None,
    container: Any = None,
) -> LoadedPipeline:
    """Run ``build_steps`` (or ``extract``, or what ``extractor_definition`` names) of the
    plugin's pipeline.py and return its steps, its prepare hook and the batch size
    (``compute_profile.batch_size``, default 64).

    ``container`` (the platform container: secrets, LLM calls) is handed to the builder as
    its ``container`` argument; None where the worker has none.
    """
    from plughost.runtime_api.extractor_request import build_extractor_request

    module = load_pipeline_module(plugin_dir)
    builder = find_builder(module, module.__name__.rpartition(".")[0] or None)
    request = build_extractor_request(
        parameters,
        manifest.get("input_mappings")
        if isinstance(manifest.get("input_mappings"), dict)
        else None,
        name=manifest.get("feature_extractor_name"),
        version=manifest.get("version"),
    )
    built = call_builder(builder, request, dataset_size, container)
    return _as_loaded(built, batch_size_of(manifest), dataset_size)


def _as_loaded(built: Any, batch_size: int, dataset_size: int | None = None) -> LoadedPipeline:
    """Steps and prepare out of what the builder returned: ``{"steps", "prepare"}``, an object
    with ``.steps`` and ``.prepare`` (``extract``'s result in Mixpeek's quick start), or the
    list of steps itself."""
    if isinstance(built, Mapping):
        steps, prepare = built.get("steps"), built.get("prepare")
    elif isinstance(built, list | tuple):
        steps, prepare = built, None
    elif hasattr(built, "steps"):
        steps, prepare = built.steps, getattr(built, "prepare", None)
    else:
        raise PipelineLoadError(
            f"build_steps returned {type(built).__name__}; expected {{'steps': [...], 'prepare': fn}}"
        )
    if not isinstance(steps, list | tuple):
        raise PipelineLoadError("build_steps must return a list of callable steps under 'steps'")
    ready = [as_step(step, dataset_size) for step in steps]
    if prepare is not None and not callable(prepare):
        raise PipelineLoadError("'prepare' must be callable (or None)")
    return LoadedPipeline(ready, prepare, batch_size)


def as_step(step: Any, dataset_size: int | None = None) -> Step:
    """One entry of the builder's steps as a callable DataFrame -> DataFrame.

    Built steps, ready-made instances and plain functions are used as they are; a
    ``StepDefinition`` is built like ``build_pipeline_steps`` builds it; a class is
    constructed once, passing only what its constructor accepts. A step whose call returns
    an awaitable (``async def __call__``) is run to completion.
    """
    from plughost.runtime_api.engine.plugins.extractors.pipeline import build_service

    if _is_step_definition(step):
        # built by the module the plugin imported it from (``engine.*`` by its plugin-side name)
        step = sys.modules[type(step).__module__].PipelineStep(step, dataset_size)
    elif inspect.isclass(step):
        step = build_service(step, None)
    if not callable(step):
        raise PipelineLoadError(
            f"step {step!r} is not callable: give a function, an object with __call__(batch),"
            " a class or a StepDefinition"
        )
    call = step if inspect.isroutine(step) else type(step).__call__
    if inspect.iscoroutinefunction(call):
        return _awaiting(step)
    return cast(Step, step)


def _is_step_definition(step: Any) -> bool:
    """Whether ``step`` is a runtime API ``StepDefinition`` (plugins import that module under
    its plugin-side name, so the class is recognised by name and module, not identity)."""
    kind = type(step)
    return kind.__name__ == "StepDefinition" and kind.__module__.endswith(
        "engine.plugins.extractors.pipeline"
    )


def _awaiting(step: Callable[..., Any]) -> Step:
    """A step calling an async step and running its coroutine on a fresh event loop."""

    def run(batch: Any) -> Any:
        result = step(batch)
        return asyncio.run(_await(result)) if inspect.isawaitable(result) else result

    run.__name__ = getattr(step, "__name__", type(step).__name__)
    return run


async def _await(awaitable: Any) -> Any:
    return await awaitable


def compute_profile(manifest: Mapping[str, Any]) -> dict[str, Any]:
    raw = manifest.get("compute_profile")
    if raw is None and isinstance(manifest.get("metadata"), Mapping):
        raw = manifest["metadata"].get("compute_profile")
    return dict(raw) if isinstance(raw, Mapping) else {}


def _positive(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return default
    return float(value)


def batch_size_of(manifest: Mapping[str, Any]) -> int:
    return int(_positive(compute_profile(manifest).get("batch_size"), DEFAULT_BATCH_SIZE))


def max_concurrency_of(manifest: Mapping[str, Any]) -> int:
    return int(_positive(compute_profile(manifest).get("max_concurrency"), 2))


def actor_memory_gb_of(manifest: Mapping[str, Any]) -> float:
    return _positive(compute_profile(manifest).get("actor_memory_gb"), 2.0)


# -- running ------------------------------------------------------------------------------------
def run_chunk(pipeline: LoadedPipeline, chunk: pd.DataFrame) -> ChunkResult:
    """``prepare`` then the steps over one chunk (the row-id column becomes the index)."""
    frame = chunk.set_index(ROW_ID, drop=True)
    frame.index.name = None
    dataset = LocalDataset.from_pandas(frame)
    limit = None
    if pipeline.prepare is not None:
        try:
            prepared = pipeline.prepare(dataset)
        except Exception as exc:  # noqa: BLE001 - plugin code may raise anything: it becomes the error entry
            return ChunkResult(_empty(), [_error(frame.index, exc, "prepare")], None)
        dataset = prepared if prepared is not None else dataset
        limit = getattr(dataset, "row_limit", None)
    try:
        kept = _as_frame(dataset)
    except Exception as exc:  # noqa: BLE001 - plugin code may raise anything: it becomes the error entry
        return ChunkResult(_empty(), [_error(frame.index, exc, "prepare")], limit)
    outputs: list[pd.DataFrame] = []
    ids: list[np.ndarray] = []
    errors: list[dict[str, Any]] = []
    for start in range(0, len(kept), pipeline.batch_size):
        batch = kept.iloc[start : start + pipeline.batch_size]
        try:
            outputs.append(_steps_output(pipeline.steps, batch))
        except Exception as exc:  # noqa: BLE001 - plugin code may raise anything: it becomes the error entry
            errors.append(_error(batch.index, exc, "step"))
        else:
            ids.append(batch.index.to_numpy())
    if not outputs:
        return ChunkResult(_empty(), errors, limit)
    # the row ids go in once per chunk, not once per batch
    frame_out = pd.concat(outputs, ignore_index=True)
    frame_out[ROW_ID] = np.concatenate(ids)
    return ChunkResult(frame_out, errors, limit)


def _as_frame(dataset: Any) -> pd.DataFrame:
    if isinstance(dataset, LocalDataset):
        return dataset.to_pandas()
    if isinstance(dataset, pd.DataFrame):
        return dataset
    raise TypeError(f"prepare returned {type(dataset).__name__}, not the dataset")


def run_steps(steps: list[Step], batch: pd.DataFrame) -> pd.DataFrame:
    """The steps over one batch; the result has the batch's input columns plus what the steps
    added, one row per batch row, and the row ids in the row-id column."""
    out = _steps_output(steps, batch)
    # a frame of our own (the step may hold on to the one it returned), indexed 0..n-1
    out = out.copy(deep=False) if _plain_index(out.index) else out.reset_index(drop=True)
    out[ROW_ID] = batch.index.to_numpy()
    return out


def _steps_output(steps: list[Step], batch: pd.DataFrame) -> pd.DataFrame:
    """What :func:`run_steps` returns, without the row-id column. The result may be the very
    frame the last step returned (callers that add columns copy it first)."""
    frame: Any = batch.reset_index(drop=True)
    for step in steps:
        frame = step(frame)
        if frame is None:
            raise TypeError(f"step {getattr(step, '__name__', step)!r} returned None")
    out = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
    if len(out) != len(batch):
        raise ValueError(f"the steps returned {len(out)} rows for a batch of {len(batch)}")
    missing = [c for c in batch.columns if c not in out.columns]
    if missing:
        plain = out if _plain_index(out.index) else out.reset_index(drop=True)
        out = pd.concat([batch[missing].reset_index(drop=True), plain], axis=1)
    return out


def _plain_index(index: pd.Index) -> bool:
    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1


def _empty() -> pd.DataFrame:
    return pd.DataFrame({ROW_ID: pd.Series([], dtype="int64")})


def _error(index: pd.Index, exc: BaseException, stage: str) -> dict[str, Any]:
    rows = [int(i) for i in index]
    return {
        "first_row": min(rows) if rows else None,
        "last_row": max(rows) if rows else None,
        "rows": len(rows),
        "stage": stage,
        "message": f"{type(exc).__name__}: {exc}",
    }
