"""A service's batch handler, for micro-batching (:mod:`plughost.replica.batching`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, cast

from plughost.replica.methods import own_method

BATCH_METHOD = "run_inference_batch"
FRAME_SERVICE_BASE = "BaseBatchInferenceService"


def is_frame_service(service: object) -> bool:
    """Whether the service is a BaseBatchInferenceService (called with DataFrames)."""
    return any(k.__name__ == FRAME_SERVICE_BASE for k in type(service).__mro__)


def resolve_batch_handler(service: object) -> Callable[..., Any] | None:
    """``batch(inputs: list[dict], parameters: list[dict]) -> list`` of the service, or None.

    Its own ``run_inference_batch`` (plain or async) as it is; a BaseBatchInferenceService
    gets one DataFrame row per call (the call's inputs as columns; parameters are not
    passed) and each call its row of the returned DataFrame as a dict.
    """
    if inspect.isroutine(service):
        return None
    method = own_method(service, BATCH_METHOD)
    if method is not None:
        return method
    if not is_frame_service(service) or not callable(service):
        return None
    frame_service = cast(Callable[..., Any], service)

    def by_frame(inputs: list[dict[str, Any]], parameters: list[dict[str, Any]]) -> Any:
        import pandas as pd

        out = frame_service(pd.DataFrame(inputs))
        return out.to_dict(orient="records")

    return by_frame


def one_of_a_batch(batch_handler: Callable[..., Any]) -> Callable[..., Any]:
    """A single-call handler answering through a batch of one."""

    def call(inputs: Any, parameters: Any) -> Any:
        results = batch_handler([inputs], [parameters])
        return results[0] if isinstance(results, (list, tuple)) and results else results

    return call
