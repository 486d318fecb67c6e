"""Format detection, streaming readers, mime types and the Dataset stand-in."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from plughost.batch.dataset import LocalDataset
from plughost.batch.formats import InputFormatError, detect_format
from plughost.batch.mime import mime_of
from plughost.batch.parts import ChunkRecord, PartStore
from plughost.batch.reader import iter_chunks, scan


@pytest.mark.parametrize(
    ("head", "name", "fmt"),
    [
        (b"PAR1....", None, "parquet"),
        (b"PAR1....", "x.csv", "parquet"),
        (b'{"a": 1}\n', None, "jsonl"),
        (b'"plain"\n', None, "jsonl"),
        (b"a,b\n1,2\n", None, "csv"),
        (b'{"a": 1}\n', "x.csv", "csv"),
        (b"a,b\n", "x.jsonl", "jsonl"),
    ],
)
def test_format_is_told_by_content_then_name(head: bytes, name: str | None, fmt: str) -> None:
    assert detect_format(head, name) == fmt


@pytest.mark.parametrize(
    ("head", "name"), [(b"", None), (b"\x00\x01binary", None), (b"a,b", "x.parquet")]
)
def test_undetectable_inputs_are_refused(head: bytes, name: str | None) -> None:
    with pytest.raises(InputFormatError):
        detect_format(head, name)


def test_chunks_have_fixed_sizes_in_every_format(tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(50)], "n": range(50)})
    frame.to_parquet(tmp_path / "a.parquet", row_group_size=7)
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_json(tmp_path / "a.jsonl", orient="records", lines=True)
    for fmt in ("parquet", "csv", "jsonl"):
        chunks = list(iter_chunks(tmp_path / f"a.{fmt}", fmt, 16))
        assert [len(c) for c in chunks] == [16, 16, 16, 2], fmt
        assert list(pd.concat(chunks)["text"]) == list(frame["text"])
        assert scan(tmp_path / f"a.{fmt}", fmt) == 50


def test_scan_counts_rows_whatever_the_columns_and_refuses_an_empty_input(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"body": "x"}\n"a plain string"\n')
    assert scan(tmp_path / "a.jsonl", "jsonl") == 2
    (tmp_path / "b.jsonl").write_text("\n")
    with pytest.raises(InputFormatError, match="no rows"):
        scan(tmp_path / "b.jsonl", "jsonl")


def test_mixed_jsonl_types_name_the_column(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"v": 1}\n{"v": [1, 2]}\n')
    with pytest.raises(InputFormatError, match="lines 1-2: column 'v'"):
        list(iter_chunks(tmp_path / "a.jsonl", "jsonl", 16))


def test_mime_types_of_data_values() -> None:
    assert mime_of("https://x.org/cat.jpg?sig=1") == "image/jpeg"
    assert mime_of("s3://b/v.mp4") == "video/mp4"
    assert mime_of("hello world") == "text/plain"
    assert mime_of("data:image/png;base64,xx") == "image/png"
    assert mime_of(b"%PDF-1.7") == "application/pdf"
    assert mime_of(None) is None


def test_dataset_filter_map_batches_and_limit_keep_row_positions() -> None:
    frame = pd.DataFrame({"n": range(10)}, index=range(100, 110))
    ds = (
        LocalDataset.from_pandas(frame)
        .filter(lambda row: row["n"] % 2 == 0)
        .map(lambda row: {"n": row["n"], "sq": row["n"] ** 2})
        .map_batches(lambda b: b.assign(neg=-b["n"]), batch_size=2)
        .limit(3)
    )
    out = ds.to_pandas()
    assert list(out.index) == [100, 102, 104] and list(out["sq"]) == [0, 4, 16]
    assert ds.row_limit == 3 and ds.count() == 3
    assert [r["neg"] for r in ds.iter_rows()] == [0, -2, -4]
    assert ds.take(1) == [{"n": 0, "sq": 0, "neg": 0}]


def test_rows_give_none_for_missing_values_as_ray_data_does() -> None:
    nan = float("nan")  # how pandas holds a null once frames are joined or read back
    frame = pd.DataFrame({"text": ["a", "", nan], "url": [nan, nan, "file:///x.png"]})
    ds = LocalDataset.from_pandas(frame).filter(lambda row: bool(row["text"] or row["url"]))
    assert list(ds.to_pandas().index) == [0, 2]
    assert next(r["url"] for r in LocalDataset.from_pandas(frame).iter_rows()) is None


def test_map_batches_builds_a_class_once_like_a_ray_actor() -> None:
    built: list[int] = []

    class Add:
        def __init__(self, k: int) -> None:
            built.append(k)
            self.k = k

        def __call__(self, batch: dict) -> dict:
            return {"n": batch["n"] + self.k}

    ds = LocalDataset.from_pandas(pd.DataFrame({"n": range(6)})).map_batches(
        Add, batch_size=2, batch_format="numpy", fn_constructor_args=(10,)
    )
    assert list(ds.to_pandas()["n"]) == list(range(10, 16)) and built == [10]


def test_parts_resume_with_exactly_the_committed_chunks(tmp_path: Path) -> None:
    import pyarrow as pa

    parts = PartStore(tmp_path / "parts")
    parts.commit(ChunkRecord(1, 2, 2, 0), pa.table({"a": [3, 4], "__plughost_row__": [2, 3]}))
    parts.commit(ChunkRecord(0, 2, 2, 0), pa.table({"a": [None, None], "__plughost_row__": [0, 1]}))
    (tmp_path / "parts" / "part-00000002.parquet").write_bytes(b"half written")
    assert sorted(PartStore(tmp_path / "parts").finished()) == [0, 1]
    assert not (tmp_path / "parts" / "part-00000002.parquet").exists()
    rows = parts.merge(tmp_path / "out.parquet", limit=3)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert rows == 3 and list(out.columns) == ["a"] and out["a"].tolist()[2] == 3
