"""shared.plugins.inference.batch.BaseBatchInferenceService."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from shared.plugins.inference.batch import BaseBatchInferenceService


class Upper(BaseBatchInferenceService):
    def _process_batch(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = batch[batch["text"] != ""].copy()
        out["upper"] = out["text"].str.upper()
        return out


def test_call_returns_the_processed_frame_with_its_index_reset() -> None:
    frame = pd.DataFrame({"text": ["a", "", "c"]}, index=[10, 11, 12])
    result = Upper()(frame)
    assert list(result["upper"]) == ["A", "C"]
    assert list(result.index) == [0, 1]


def test_a_dict_of_columns_is_accepted_as_a_batch() -> None:
    assert list(Upper()({"text": ["x"]})["upper"]) == ["X"]


def test_constructor_takes_config_and_progress_actor_like_a_pipeline_step() -> None:
    service = Upper({"threshold": 0.5}, progress_actor=None, extra=1)
    assert service.config == {"threshold": 0.5}
    assert service.progress_actor is None
    assert service.kwargs == {"extra": 1}
    assert Upper().config is None


def test_process_batch_must_be_implemented() -> None:
    with pytest.raises(NotImplementedError, match="_process_batch"):
        BaseBatchInferenceService()(pd.DataFrame({"a": [1]}))


def test_a_result_that_is_not_a_frame_is_a_type_error() -> None:
    class Bad(BaseBatchInferenceService):
        def _process_batch(self, batch: pd.DataFrame) -> Any:
            return [1, 2]

    with pytest.raises(TypeError, match="must return a DataFrame, not list"):
        Bad()(pd.DataFrame({"a": [1]}))
