"""How the server commits a Ray window's results (no Ray): rows split back into their chunks,
error ranges, the row limit prepare set, and a worker that could not start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from plughost.batch.parts import PartStore
from plughost.batch.protocol import ROW_ID, table_to_ipc
from plughost.batch.ray_data import RayDataJobs
from plughost.batch.ray_steps import RESULT_SCHEMA, SandboxedSteps
from plughost.batch.runner import Counters, JobFailed, JobPlan
from plughost.config import Settings

CHUNK = 4


def _plan(tmp_path: Path, on_error: str = "skip") -> JobPlan:
    return JobPlan(
        input_path=tmp_path / "in.jsonl",
        input_format="jsonl",
        plugin_dir=tmp_path,
        parts=PartStore(tmp_path / "parts"),
        workers=1,
        chunk_rows=CHUNK,
        on_error=on_error,
        init={},
        make_spec=lambda: None,  # type: ignore[arg-type, return-value]
        release_spec=lambda spec: None,
    )


def _result(ids: list[int], errors: Any = (), limit: int | None = None, fatal: Any = None) -> dict:
    table = pa.table({"text": [f"t{i}" for i in ids], ROW_ID: ids})
    return {
        "ipc": table_to_ipc(table) if ids else b"",
        "errors": orjson.dumps(list(errors)).decode(),
        "limit": limit,
        "fatal": fatal,
        "output": "[]",
    }


def _window(*chunks: int) -> list[tuple[int, bytes, int, int]]:
    return [(c, b"", c * CHUNK, CHUNK) for c in chunks]


def test_rows_go_back_to_their_chunks_with_errors_and_limit(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    counters = Counters()
    error = {"first_row": 6, "last_row": 7, "rows": 2, "stage": "step", "message": "boom"}
    results = [_result([0, 1, 2, 3], limit=9), _result([4, 5], errors=[error], limit=3)]
    limit = RayDataJobs(Settings())._commit(plan, _window(0, 1), results, counters)
    done = plan.parts.finished()
    assert limit == 3 and {c: r.limit for c, r in done.items()} == {0: 3, 1: 3}
    assert (done[0].rows_out, done[1].rows_out, done[1].rows_failed) == (4, 2, 2)
    assert done[1].errors == [error] and counters.rows_done == 8 and counters.rows_failed == 2


def test_an_error_fails_the_job_with_on_error_fail(tmp_path: Path) -> None:
    error = {"first_row": 0, "last_row": 3, "rows": 4, "stage": "step", "message": "E: x"}
    with pytest.raises(JobFailed, match="rows 0-3 failed: E: x"):
        RayDataJobs(Settings())._commit(
            _plan(tmp_path, "fail"), _window(0), [_result([], errors=[error])], Counters()
        )


def test_a_worker_that_cannot_start_fails_the_job_with_its_message(tmp_path: Path) -> None:
    results = [_result([0]), _result([], fatal="cannot load pipeline.py: SyntaxError: x")]
    with pytest.raises(JobFailed, match="cannot load pipeline.py: SyntaxError"):
        RayDataJobs(Settings())._commit(_plan(tmp_path), _window(0), results, Counters())
    assert plan_is_empty(tmp_path)


def plan_is_empty(tmp_path: Path) -> bool:
    return not list((tmp_path / "parts").glob("chunk-*.json"))


def test_an_actor_whose_package_is_gone_answers_fatal_for_every_batch() -> None:
    steps = SandboxedSteps({"plugin_package": "gcs://_ray_pkg_missing.zip", "init": {}})
    batch = pa.table({"text": ["a"], ROW_ID: [0]})
    out = steps(batch)
    assert out.schema == RESULT_SCHEMA and out.num_rows == 1
    assert out.column("fatal")[0].as_py(), out
