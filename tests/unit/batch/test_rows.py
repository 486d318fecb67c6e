"""The columns a batch step gets (data, mime_type, document_id, object_id) and the output
without the ones the steps left alone; the worker's answer to a chunk, end to end in process."""

from __future__ import annotations

import base64
from typing import Any

import pandas as pd
import pyarrow as pa

from plughost.batch.pipeline import LoadedPipeline
from plughost.batch.protocol import ROW_ID, ipc_to_table, table_to_ipc
from plughost.batch.rows import data_sources, restore_input_columns, supply_columns
from plughost.batch.worker.main import answer_block, answer_chunk


def chunk(start: int = 0, **columns: list[object]) -> pd.DataFrame:
    frame = pd.DataFrame(columns)
    frame[ROW_ID] = range(start, start + len(frame))
    return frame


def test_data_comes_from_text_and_the_row_ids_name_documents_and_objects() -> None:
    given, supplied = supply_columns(chunk(40, text=["hello", "world"], n=[1, 2]))
    assert list(given["data"]) == ["hello", "world"]
    assert list(given["mime_type"]) == ["text/plain", "text/plain"]
    assert list(given["document_id"]) == ["doc_40", "doc_41"]
    assert list(given["object_id"]) == ["obj_40", "obj_41"]
    assert list(given["text"]) == ["hello", "world"] and list(given["n"]) == [1, 2]
    assert set(supplied) == {"data", "mime_type", "document_id", "object_id"}


def test_data_takes_the_first_value_per_row_of_mappings_then_text_then_url() -> None:
    sources = data_sources({"input_mappings": {"image": "picture"}})
    assert sources == ["picture", "text", "url", "uri"]
    given, _ = supply_columns(
        chunk(
            text=["a cat", None, "", None],
            url=[None, "file:///data/cat.png", None, None],
            picture=[None, None, None, "https://x.org/p.jpg"],
        ),
        sources,
    )
    assert list(given["data"]) == ["a cat", "file:///data/cat.png", "", "https://x.org/p.jpg"]
    assert list(given["mime_type"]) == ["text/plain", "image/png", "text/plain", "image/jpeg"]


def test_the_inputs_own_columns_win_and_missing_mime_types_are_filled() -> None:
    given, supplied = supply_columns(
        chunk(
            data=["s3://b/v.mp4", "hi"],
            text=["ignored", "ignored"],
            mime_type=[None, "text/markdown"],
            document_id=["d1", "d2"],
        )
    )
    assert list(given["data"]) == ["s3://b/v.mp4", "hi"]
    assert list(given["mime_type"]) == ["video/mp4", "text/markdown"]
    assert list(given["document_id"]) == ["d1", "d2"]
    assert set(supplied) == {"mime_type", "object_id"}


def test_a_single_column_of_bytes_becomes_data_uris() -> None:
    png = b"\x89PNG\r\n\x1a\nrest"
    given, _ = supply_columns(chunk(image=[png, b"\x00\x01"]))
    assert given["data"][0] == "data:image/png;base64," + base64.b64encode(png).decode()
    assert given["data"][1].startswith("data:application/octet-stream;base64,")
    assert list(given["mime_type"]) == ["image/png", "application/octet-stream"]


def test_without_any_source_there_is_no_data_column() -> None:
    given, supplied = supply_columns(chunk(a=[1, 2], b=["x", "y"]))
    assert "data" not in given.columns and "mime_type" not in given.columns
    assert set(supplied) == {"document_id", "object_id"}


def test_the_output_drops_supplied_columns_unless_a_step_changed_them() -> None:
    raw = chunk(5, text=["a", "b"])
    given, supplied = supply_columns(raw)
    out = given.copy()
    out["embedding"] = [[1.0], [2.0]]
    out["document_id"] = ["mine_1", "mine_2"]  # the step's own values stay
    restored = restore_input_columns(out, given, supplied)
    assert list(restored.columns) == ["text", ROW_ID, "document_id", "embedding"]
    assert list(restored["document_id"]) == ["mine_1", "mine_2"]


def test_a_rewritten_input_column_gets_its_input_values_back() -> None:
    raw = chunk(0, data=[b"\x89PNG one", b"\x89PNG two"])
    given, supplied = supply_columns(raw)
    assert given["data"][0].startswith("data:image/png;base64,")
    out = given.iloc[[1]].reset_index(drop=True)  # a step kept one row of two
    restored = restore_input_columns(out, given, supplied)
    assert list(restored["data"]) == [b"\x89PNG two"]
    assert "document_id" not in restored.columns


def _quickstart_step(batch: pd.DataFrame) -> pd.DataFrame:
    batch = batch.copy()
    batch["length"] = [len(str(t)) for t in batch["data"]]
    batch["seen_ids"] = list(batch["document_id"])
    return batch


def _body(frame: pd.DataFrame) -> bytes:
    return table_to_ipc(pa.Table.from_pandas(frame, preserve_index=False))


def test_a_worker_answers_a_chunk_with_the_steps_reading_data() -> None:
    pipeline = LoadedPipeline([_quickstart_step], None, 64)
    header, payload = answer_chunk(
        pipeline, {"chunk": 0}, _body(chunk(3, text=["ab", "cde"])), ["text"]
    )
    assert header["errors"] == []
    out = ipc_to_table(payload).to_pandas()
    assert list(out["length"]) == [2, 3] and list(out["seen_ids"]) == ["doc_3", "doc_4"]
    assert "data" not in out.columns and "mime_type" not in out.columns


def test_a_step_reading_a_missing_column_fails_with_its_keyerror_and_the_columns() -> None:
    def reads_text(batch: pd.DataFrame) -> pd.DataFrame:
        return batch.assign(n=batch["text"].str.len())

    pipeline = LoadedPipeline([reads_text], None, 64)
    header, _ = answer_chunk(pipeline, {"chunk": 0}, _body(chunk(body=["x"])))
    (error,) = header["errors"]
    assert error["message"].startswith("KeyError: 'text'")
    assert "columns: body, data, mime_type, document_id, object_id" in error["message"]


def test_a_worker_answers_a_block_chunk_by_chunk_as_separate_chunk_frames() -> None:
    seen: list[int] = []

    def prepare(ds: Any) -> Any:
        seen.append(ds.count())  # prepare sees one chunk at a time, never the block
        return ds

    def fails_on_row_4(batch: pd.DataFrame) -> pd.DataFrame:
        if "row 4" in list(batch["text"]):
            raise ValueError("bad row")
        return _quickstart_step(batch)

    pipeline = LoadedPipeline([fails_on_row_4], prepare, 2)
    block = pd.concat(
        [chunk(0, text=["row 0", "row 1", "row 2"]), chunk(3, text=["row 3", "row 4"])]
    )
    header, payload = answer_block(
        pipeline, {"type": "block", "chunks": [[0, 3], [1, 2]]}, _body(block), ["text"]
    )
    assert seen == [3, 2]
    first, second = header["chunks"]
    assert (first["chunk"], first["errors"], second["chunk"]) == (0, [], 1)
    assert [(e["first_row"], e["last_row"]) for e in second["errors"]] == [(3, 4)]
    assert first["bytes"] + second["bytes"] == len(payload)
    assert ipc_to_table(payload[first["bytes"] :]).num_rows == 0
    out = ipc_to_table(payload[: first["bytes"]]).to_pandas()
    assert list(out["seen_ids"]) == ["doc_0", "doc_1", "doc_2"]
    assert "data" not in out.columns
