"""``engine.plugins.extractors.pipeline``: declarative batch pipelines made of steps.

A plugin's ``build_steps`` lists :class:`StepDefinition` s in a :class:`PipelineDefinition`
and turns them into callables with :func:`build_pipeline_steps`. Each callable takes a
pandas DataFrame and returns one; a batch runner calls them in order, and reads each one's
``resources``, ``batch_size`` and ``concurrency`` to size its workers. pandas is imported only
when a step runs.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

MIME_TYPE_COLUMN = "mime_type"


class ResourceType(str, Enum):
    """What a step mostly waits on; it sets the step's defaults (:data:`RESOURCE_DEFAULTS`)."""

    CPU = "cpu"
    GPU = "gpu"
    API = "api"


class RowCondition(str, Enum):
    """Which rows a step processes, decided by the row's ``mime_type`` column."""

    ALWAYS = "always"
    IS_TEXT = "is_text"
    IS_IMAGE = "is_image"
    IS_VIDEO = "is_video"
    IS_AUDIO = "is_audio"
    IS_PDF = "is_pdf"
    IS_VIDEO_OR_AUDIO = "is_video_or_audio"
    IS_VISUAL = "is_visual"

    def matches(self, mime_type: object) -> bool:
        """Whether a row with this ``mime_type`` qualifies.

        ALWAYS matches every row. The others look at the media type before any ``;``
        parameter, case-insensitively; a missing or non-string mime_type matches none of them.
        IS_VISUAL means image or video.
        """
        if self is RowCondition.ALWAYS:
            return True
        if not isinstance(mime_type, str):
            return False
        kind = mime_type.split(";", 1)[0].strip().lower()
        return any(_mime_matches(kind, accepted) for accepted in _ACCEPTED[self])


_ACCEPTED: dict[RowCondition, tuple[str, ...]] = {
    RowCondition.ALWAYS: (),
    RowCondition.IS_TEXT: ("text/",),
    RowCondition.IS_IMAGE: ("image/",),
    RowCondition.IS_VIDEO: ("video/",),
    RowCondition.IS_AUDIO: ("audio/",),
    RowCondition.IS_PDF: ("application/pdf",),
    RowCondition.IS_VIDEO_OR_AUDIO: ("video/", "audio/"),
    RowCondition.IS_VISUAL: ("image/", "video/"),
}


def _mime_matches(kind: str, accepted: str) -> bool:
    return kind.startswith(accepted) if accepted.endswith("/") else kind == accepted


@dataclass(frozen=True)
class ResourceDefaults:
    """Defaults of one resource type: per-worker resources, rows per batch, worker count."""

    num_cpus: float
    num_gpus: float
    batch_size: int
    concurrency: int


RESOURCE_DEFAULTS: dict[ResourceType, ResourceDefaults] = {
    ResourceType.CPU: ResourceDefaults(num_cpus=1.0, num_gpus=0.0, batch_size=64, concurrency=2),
    ResourceType.GPU: ResourceDefaults(num_cpus=1.0, num_gpus=1.0, batch_size=8, concurrency=1),
    ResourceType.API: ResourceDefaults(num_cpus=0.25, num_gpus=0.0, batch_size=16, concurrency=8),
}


@dataclass
class StepDefinition:
    """One step: ``service_class(config)`` is built once per worker, then called per batch.

    ``service_class`` may also be a plain function (DataFrame -> DataFrame), used as is.
    ``concurrency`` and ``batch_size`` override the resource type's defaults; a step with
    ``enabled=False`` is left out of the built pipeline.
    """

    service_class: Callable[..., Any]
    resource_type: ResourceType = ResourceType.CPU
    config: Any = None
    condition: RowCondition = RowCondition.ALWAYS
    enabled: bool = True
    concurrency: int | None = None
    batch_size: int | None = None


@dataclass
class PipelineDefinition:
    """A named, versioned list of steps."""

    name: str
    version: str
    steps: list[StepDefinition] = field(default_factory=list)


class PipelineStep:
    """A built step: call it with a DataFrame to get the processed DataFrame.

    Attributes a batch runner reads: ``name``, ``resource_type``, ``resources``
    (``{"num_cpus", "num_gpus"}`` per worker), ``batch_size``, ``concurrency`` and
    ``condition``. Rows the condition rejects pass through unchanged; the result keeps the
    rows' order when the service returns one row per row it was given (otherwise its rows come
    first, then the passed-through ones) and has a fresh index.
    """

    def __init__(self, definition: StepDefinition, dataset_size: int | None = None) -> None:
        defaults = RESOURCE_DEFAULTS[ResourceType(definition.resource_type)]
        self.definition = definition
        self.name: str = getattr(definition.service_class, "__name__", "step")
        self.__name__ = self.name  # runners name a failing step the way they name a function
        self.resource_type = ResourceType(definition.resource_type)
        self.condition = RowCondition(definition.condition)
        self.resources: dict[str, float] = {
            "num_cpus": defaults.num_cpus,
            "num_gpus": defaults.num_gpus,
        }
        self.batch_size: int = definition.batch_size or defaults.batch_size
        self.concurrency: int = definition.concurrency or _auto_concurrency(
            defaults.concurrency, self.batch_size, dataset_size
        )
        self._service: Callable[..., Any] | None = None

    @property
    def service(self) -> Callable[..., Any]:
        """The step's service, built on first use (once per worker holding this step)."""
        if self._service is None:
            self._service = build_service(self.definition.service_class, self.definition.config)
        return self._service

    def __call__(self, batch: Any) -> pd.DataFrame:
        import pandas as pd

        frame = batch if isinstance(batch, pd.DataFrame) else pd.DataFrame(batch)
        frame = frame.reset_index(drop=True)
        mask = self._mask(frame)
        if mask.all():
            return _as_frame(self._serve(frame)).reset_index(drop=True)
        if not mask.any():
            return frame
        selected, rest = frame[mask], frame[~mask]
        out = _as_frame(self._serve(selected.reset_index(drop=True)))
        if len(out) == len(selected):
            out.index = selected.index
            return pd.concat([out, rest]).sort_index(kind="stable").reset_index(drop=True)
        return pd.concat([out, rest], ignore_index=True)

    def _serve(self, frame: pd.DataFrame) -> Any:
        """The service's answer for ``frame``; an awaitable one (an ``async def __call__``)
        is run to completion on a fresh event loop."""
        result = self.service(frame)
        if inspect.isawaitable(result):
            return asyncio.run(_awaited(result))
        return result

    def _mask(self, frame: pd.DataFrame) -> pd.Series:
        import pandas as pd

        if self.condition is RowCondition.ALWAYS:
            return pd.Series(True, index=frame.index)
        if MIME_TYPE_COLUMN not in frame.columns:
            return pd.Series(False, index=frame.index)
        return frame[MIME_TYPE_COLUMN].map(self.condition.matches).astype(bool)

    def __repr__(self) -> str:
        return (
            f"PipelineStep({self.name}, {self.resource_type.name}, {self.condition.name}, "
            f"batch_size={self.batch_size}, concurrency={self.concurrency})"
        )


def build_service(service_class: Callable[..., Any], config: Any) -> Callable[..., Any]:
    """Build a step's service from its class and config, passing only what the constructor
    accepts.

    The constructor styles of Mixpeek's docs all work: ``(config, progress_actor=None)``,
    ``(config=None, **kwargs)``, ``(config, **kwargs)``, ``(config)`` and ``()``. ``config``
    goes to the first positional parameter (or a keyword-only ``config``); it is left out when
    the constructor has no such parameter, or when it is None and the constructor can do
    without it. ``progress_actor=None`` is passed only to a constructor naming that parameter
    (``**kwargs`` are often handed on to ``object.__init__``). A ready-made instance or a
    plain function is returned as is.
    """
    if not inspect.isclass(service_class):
        return service_class
    try:
        signature = inspect.signature(service_class)
    except (TypeError, ValueError):
        return service_class(config)
    params = signature.parameters
    extra: dict[str, Any] = {"progress_actor": None} if "progress_actor" in params else {}
    positional = [
        p
        for p in params.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        and p.name != "progress_actor"
    ]
    if config is None and _binds(signature, (), extra):
        return service_class(**extra)
    if positional:
        return service_class(config, **extra)
    if "config" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return service_class(config=config, **extra)
    return service_class(**extra)


def _binds(signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _as_frame(result: Any) -> pd.DataFrame:
    import pandas as pd

    return result if isinstance(result, pd.DataFrame) else pd.DataFrame(result)


def _auto_concurrency(default: int, batch_size: int, dataset_size: int | None) -> int:
    """The resource type's default, but no more workers than there are batches."""
    if not dataset_size or dataset_size <= 0:
        return default
    return max(1, min(default, math.ceil(dataset_size / batch_size)))


def build_pipeline_steps(
    pipeline: PipelineDefinition, dataset_size: int | None = None
) -> list[PipelineStep]:
    """The enabled steps of ``pipeline``, in order, as callables DataFrame -> DataFrame.

    ``dataset_size`` (rows to process, when known) caps each step's default concurrency.
    """
    return [PipelineStep(step, dataset_size) for step in pipeline.steps if step.enabled]
