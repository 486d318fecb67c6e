"""Worker side of a batch job: load pipeline.py once, then run chunks through it.

For each chunk: ``prepare(dataset)`` on a :class:`~plughost.batch.dataset.LocalDataset`
(lazy; runs when read), then the steps in order on batches of ``batch_size`` rows. A batch
whose steps raise becomes an error entry (its first and last input row and the plugin's
message) and leaves no output rows; the server decides whether that fails the job.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

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


def _call_builder(builder: Callable[..., Any], request: Any, dataset_size: int | None) -> Any:
    offered = {
        "extractor_request": request,
        "container": None,
        "base_steps": [],
        "dataset_size": dataset_size,
        "content_flags": None,
    }
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return builder(request)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return builder(**offered)
    first = next(iter(params), None)
    kwargs = {k: v for k, v in offered.items() if k in params}
    if "extractor_request" not in params and first is not None:
        kwargs.pop(first, None)
        return builder(request, **kwargs)
    return builder(**kwargs)


def load_pipeline(
    plugin_dir: Path,
    parameters: Mapping[str, Any],
    manifest: Mapping[str, Any],
    dataset_size: int | None = None,
) -> LoadedPipeline:
    """Run ``build_steps`` (or ``extract``) of the plugin's pipeline.py and return its steps,
    its prepare hook and the batch size (``compute_profile.batch_size``, default 64)."""
    from plughost.runtime_api.extractor_request import build_extractor_request

    module = load_pipeline_module(plugin_dir)
    builder = getattr(module, "build_steps", None) or getattr(module, "extract", None)
    if not callable(builder):
        raise PipelineLoadError("pipeline.py defines neither build_steps(...) nor extract(...)")
    request = build_extractor_request(
        parameters,
        manifest.get("input_mappings")
        if isinstance(manifest.get("input_mappings"), dict)
        else None,
        name=manifest.get("feature_extractor_name"),
        version=manifest.get("version"),
    )
    built = _call_builder(builder, request, dataset_size)
    return _as_loaded(built, batch_size_of(manifest))


def _as_loaded(built: Any, batch_size: int) -> LoadedPipeline:
    if isinstance(built, Mapping):
        steps, prepare = built.get("steps"), built.get("prepare")
    elif isinstance(built, list | tuple):
        steps, prepare = built, None
    else:
        raise PipelineLoadError(
            f"build_steps returned {type(built).__name__}; expected {{'steps': [...], 'prepare': fn}}"
        )
    if not isinstance(steps, list | tuple) or not all(callable(s) for s in steps):
        raise PipelineLoadError("build_steps must return a list of callable steps under 'steps'")
    if prepare is not None and not callable(prepare):
        raise PipelineLoadError("'prepare' must be callable (or None)")
    return LoadedPipeline(list(steps), prepare, batch_size)


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
    errors: list[dict[str, Any]] = []
    for start in range(0, len(kept), pipeline.batch_size):
        batch = kept.iloc[start : start + pipeline.batch_size]
        try:
            outputs.append(run_steps(pipeline.steps, batch))
        except Exception as exc:  # noqa: BLE001 - plugin code may raise anything: it becomes the error entry
            errors.append(_error(batch.index, exc, "step"))
    frame_out = pd.concat(outputs, ignore_index=True) if outputs else _empty()
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
    ids = list(batch.index)
    frame: Any = batch.reset_index(drop=True)
    for step in steps:
        frame = step(frame)
        if frame is None:
            raise TypeError(f"step {getattr(step, '__name__', step)!r} returned None")
    out = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
    if len(out) != len(ids):
        raise ValueError(f"the steps returned {len(out)} rows for a batch of {len(ids)}")
    out = out.reset_index(drop=True)
    source = batch.reset_index(drop=True)
    missing = [c for c in source.columns if c not in out.columns]
    if missing:
        out = pd.concat([source[missing], out], axis=1)
    out[ROW_ID] = ids
    return out


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
