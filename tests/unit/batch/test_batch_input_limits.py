"""The batch reader's bounds on hostile inputs (plughost.batch.reader_limits, .parquet_checks):
over-long lines detected without holding them, nesting, rows, encodings, Parquet footers."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from batch_input_support import lying_parquet

from plughost.batch.formats import InputFormatError, detect_format
from plughost.batch.parquet_checks import check_metadata
from plughost.batch.reader import iter_chunks, scan
from plughost.batch.reader_limits import InputLimits, bounded_lines

MIB = 1 << 20
SMALL = InputLimits(max_line_bytes=1024, max_depth=8, max_rows=100)


def _read_all(path: Path, fmt: str, limits: InputLimits = SMALL) -> int:
    """Scan then read every chunk, as a job does; the rows read."""
    scan(path, fmt, limits)
    return sum(len(c) for c in iter_chunks(path, fmt, 16, limits))


# -- line length -------------------------------------------------------------------------------
def test_a_line_of_exactly_the_limit_passes_and_one_more_byte_fails(tmp_path: Path) -> None:
    text = "x" * (1024 - len('{"text": ""}'))
    ok = tmp_path / "ok.jsonl"
    ok.write_bytes(f'{{"text": "{text}"}}\n{{"text": "{text}"}}\r\n'.encode())
    assert _read_all(ok, "jsonl") == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(f'{{"text": "a"}}\n{{"text": "{text}x"}}\n'.encode())
    with pytest.raises(InputFormatError) as caught:
        scan(bad, "jsonl", SMALL)
    message = caught.value.message
    assert "JSONL line 2 (at byte 14) is longer than 1024 bytes" in message
    assert "PLUGHOST_BATCH_MAX_LINE_BYTES" in message


def test_an_over_long_line_is_refused_without_being_held(tmp_path: Path) -> None:
    """A 48 MiB line with a 1 MiB limit: Python's peak allocation stays near the limit
    (reading the line whole, as `for line in file` does, allocates all 48 MiB at once)."""
    path = tmp_path / "long.jsonl"
    with path.open("wb") as out:
        out.write(b'{"text": "')
        for _ in range(48):
            out.write(b"a" * MIB)
        out.write(b'"}\n')
    limits = InputLimits(max_line_bytes=MIB)
    for read in (
        lambda: scan(path, "jsonl", limits),
        lambda: list(iter_chunks(path, "jsonl", 16, limits)),
    ):
        tracemalloc.start()
        try:
            with pytest.raises(InputFormatError, match="JSONL line 1 .* longer than 1048576"):
                read()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 * MIB, peak


def test_bounded_lines_never_returns_more_than_the_limit_and_its_line_end() -> None:
    data = b"short\n" + b"y" * 100 + b"\n"
    lines = []
    with pytest.raises(InputFormatError, match="line 2 .at byte 6."):
        for _number, _offset, line in bounded_lines(io.BytesIO(data), 10):
            lines.append(line)
    assert lines == [b"short\n"]


def test_a_csv_row_past_the_limit_names_its_line_and_a_comma_bomb_stays_cheap(
    tmp_path: Path,
) -> None:
    limits = InputLimits(max_line_bytes=MIB)
    path = tmp_path / "long.csv"
    path.write_bytes(b"text,n\nhello,1\n" + b"a" * (2 * MIB) + b",2\n")
    with pytest.raises(InputFormatError, match=r"CSV line 3 \(at byte 15\) is longer than"):
        _read_all(path, "csv", limits)
    bomb = tmp_path / "bomb.csv"
    bomb.write_bytes(b"text,n\n" + b"," * (3 * MIB) + b"\n")
    tracemalloc.start()
    try:
        with pytest.raises(InputFormatError, match="CSV line 2 .* longer than"):
            _read_all(bomb, "csv", limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * MIB, peak  # csv.reader would have built millions of fields


# -- nesting -----------------------------------------------------------------------------------
def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [9, 200, 100_000])
def test_deep_nesting_is_refused_with_the_line_named(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "deep.jsonl"
    # depth - 1 arrays inside the record's object: the record nests `depth` levels
    path.write_text('{"text": "a"}\n{"text": "b", "deep": ' + _nested(depth - 1) + "}\n")
    limits = InputLimits(max_line_bytes=MIB, max_depth=8)
    with pytest.raises(InputFormatError) as caught:
        _read_all(path, "jsonl", limits)
    assert caught.value.message.startswith("JSONL line 2: JSON nested deeper than 8 levels")
    assert "PLUGHOST_BATCH_MAX_JSON_DEPTH" in caught.value.message


def test_nesting_at_the_limit_and_many_shallow_brackets_pass(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    wide = json.dumps([[i] for i in range(500)])  # 501 brackets, 3 levels with the object
    path.write_text(
        '{"text": "a", "deep": ' + _nested(7) + "}\n" + '{"text": "b", "wide": ' + wide + "}\n"
    )
    limits = InputLimits(max_line_bytes=MIB, max_depth=8)
    assert scan(path, "jsonl", limits) == 2


# -- rows and encodings ------------------------------------------------------------------------
def test_more_rows_than_allowed_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    path.write_text("".join(f'{{"text": "{i}"}}\n' for i in range(5)))
    with pytest.raises(InputFormatError, match="PLUGHOST_BATCH_MAX_INPUT_ROWS"):
        scan(path, "jsonl", InputLimits(max_rows=4))
    assert scan(path, "jsonl", InputLimits(max_rows=5)) == 5


def test_latin1_and_invalid_utf8_name_the_line_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "ok"}\n{"text": "caf' + b'\xe9"}\n')
    with pytest.raises(InputFormatError) as caught:
        scan(path, "jsonl", SMALL)
    assert caught.value.message.startswith(
        "JSONL line 3: not UTF-8 text (byte 0xe9 at column 14, byte 43 of the file)"
    )
    csv_path = tmp_path / "latin.csv"
    csv_path.write_bytes(b"text,n\nok,1\nbad \xff\xfe seq,2\n")
    with pytest.raises(InputFormatError, match="CSV line 3: not UTF-8 text .byte 0xff at column 5"):
        _read_all(csv_path, "csv")


def test_utf16_is_refused_by_its_byte_order_mark_and_a_utf8_one_is_accepted(
    tmp_path: Path,
) -> None:
    for encoding in ("utf-16", "utf-16-be", "utf-32"):
        head = ("\ufeff" + '{"text": "x"}\n').encode(encoding)
        with pytest.raises(InputFormatError, match="UTF-16 or UTF-32"):
            detect_format(head, "a.jsonl")
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "x"}\n')
    assert detect_format(path.read_bytes(), None) == "jsonl"
    assert _read_all(path, "jsonl") == 1


# -- Parquet -----------------------------------------------------------------------------------
def test_a_footer_claiming_billions_of_rows_is_refused_before_reading(tmp_path: Path) -> None:
    path = lying_parquet(tmp_path / "lie.parquet", 777, 4_000_000_000)
    with pytest.raises(InputFormatError, match="4000000000 rows .*PLUGHOST_BATCH_MAX_INPUT_ROWS"):
        scan(path, "parquet", InputLimits())


def test_a_footer_claiming_more_rows_than_the_data_holds_fails_the_read(tmp_path: Path) -> None:
    path = lying_parquet(tmp_path / "lie.parquet", 777, 5000)
    assert scan(path, "parquet", InputLimits()) == 5000  # plausible, so read
    with pytest.raises(InputFormatError, match="declares 5000 rows, its data holds 777"):
        list(iter_chunks(path, "parquet", 16, InputLimits()))


def _meta(rows: int, groups: list[tuple[int, list[dict[str, int]]]], size: int = 0) -> Any:
    def chunk(values: dict[str, int]) -> Any:
        base = {
            "path_in_schema": "text",
            "data_page_offset": 4,
            "has_dictionary_page": False,
            "dictionary_page_offset": None,
            "total_compressed_size": 100,
            "total_uncompressed_size": 100,
            "num_values": 10,
        }
        return SimpleNamespace(**{**base, **values})

    row_groups = [
        SimpleNamespace(
            num_rows=n,
            num_columns=len(cols),
            column=lambda j, cols=cols: chunk(cols[j]),
        )
        for n, cols in groups
    ]
    schema = SimpleNamespace(to_arrow_schema=lambda: pa.schema([("text", pa.string())]))
    return SimpleNamespace(
        num_rows=rows,
        serialized_size=size,
        num_row_groups=len(row_groups),
        row_group=lambda i: row_groups[i],
        schema=schema,
    )


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        (_meta(-1, []), "declares -1 rows"),
        (_meta(20, [(10, [{}])]), "declares 20 rows, its row groups 10"),
        (_meta(10, [(-5, [{}]), (15, [{}])]), "row group 0 declares -5 rows"),
        (_meta(10, [(10, [{"total_compressed_size": 10**12}])]), "outside the data"),
        (_meta(10, [(10, [{"data_page_offset": 0}])]), "outside the data"),
        (_meta(10, [(10, [{"num_values": -1}])]), "negative size"),
        (
            _meta(1, [(1, [{"total_uncompressed_size": 2 * MIB, "num_values": 1}])]),
            "values average 2097152 bytes",
        ),
    ],
    ids=["negative", "sum", "group-negative", "past-end", "before-start", "values", "per-value"],
)
def test_footers_inconsistent_with_themselves_or_the_file_are_refused(
    meta: Any, match: str
) -> None:
    with pytest.raises(InputFormatError, match=match):
        check_metadata(meta, 10_000, InputLimits(max_line_bytes=MIB))


def test_a_parquet_schema_nested_past_the_limit_is_refused(tmp_path: Path) -> None:
    kind: pa.DataType = pa.int64()
    for _ in range(9):
        kind = pa.list_(kind)
    path = tmp_path / "deep.parquet"
    pq.write_table(pa.table({"deep": pa.array([None], type=kind)}), path)
    with pytest.raises(InputFormatError, match="schema nests 10 levels, past the 8"):
        scan(path, "parquet", SMALL)
    assert scan(path, "parquet", InputLimits(max_depth=10)) == 1


GIANT_ROW_GROUP = r"""
import os, sys
import pyarrow as pa, pyarrow.parquet as pq
from plughost.batch.reader import iter_chunks
path = sys.argv[1]
values = [os.urandom(512).hex() for _ in range(80_000)]  # 80 MB of incompressible text
pq.write_table(pa.table({"text": values}), path, row_group_size=1 << 20)
del values
assert pq.ParquetFile(path).metadata.num_row_groups == 1
pool = pa.default_memory_pool()
before = pool.max_memory()
chunks = iter_chunks(__import__("pathlib").Path(path), "parquet", 16)
assert len(next(chunks)) == 16 and len(next(chunks)) == 16
print(pool.max_memory() - before)
"""


def test_one_giant_row_group_is_read_page_by_page(tmp_path: Path) -> None:
    """One 80 MB row group: reading its first chunks allocates a few pages' worth, not the
    row group (pyarrow's default pre-buffering reads every column chunk whole)."""
    done = subprocess.run(
        [sys.executable, "-c", GIANT_ROW_GROUP, str(tmp_path / "giant.parquet")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert int(done.stdout.strip()) < 16 * MIB, done.stdout


def test_page_headers_of_every_kind_of_file_are_walked(tmp_path: Path) -> None:
    n = 5000
    table = pa.table(
        {
            "text": [f"t{i}" * (i % 7) for i in range(n)],
            "n": list(range(n)),
            "nested": [[i, i + 1] for i in range(n)],
            "struct": [{"a": i, "b": str(i)} for i in range(n)],
            "flag": [i % 2 == 0 for i in range(n)],
        }
    )
    options: list[dict[str, Any]] = [
        {},
        {"data_page_version": "2.0"},
        {"compression": "zstd", "row_group_size": 700},
        {"write_page_index": True, "use_dictionary": False},
    ]
    for number, kw in enumerate(options):
        path = tmp_path / f"v{number}.parquet"
        pq.write_table(table, path, **kw)
        assert _read_all(path, "parquet", InputLimits(max_page_bytes=MIB)) == n, kw


def test_a_page_past_the_limit_is_refused_from_its_header(tmp_path: Path) -> None:
    """pyarrow checks its page size every 1024 rows: 512 rows of 8 KiB make one 4 MiB page."""
    path = tmp_path / "big-page.parquet"
    values = [bytes([65 + i % 26]) * 8192 for i in range(512)]
    pq.write_table(pa.table({"blob": values}), path, use_dictionary=False, compression="none")
    with pytest.raises(InputFormatError, match="a page at byte .* holds 419.* bytes, past the"):
        scan(path, "parquet", InputLimits(max_page_bytes=MIB))
    assert scan(path, "parquet", InputLimits(max_page_bytes=8 * MIB)) == 512


def test_a_chunk_of_many_large_records_fails_before_it_is_parsed(tmp_path: Path) -> None:
    """Each line is under the line limit; their chunk (16 rows) is past the chunk limit."""
    limits = InputLimits(max_line_bytes=MIB, max_chunk_bytes=MIB)
    text = "x" * (600 * 1024)
    jsonl = tmp_path / "big.jsonl"
    jsonl.write_text("".join(f'{{"text": "{text}"}}\n' for _ in range(4)))
    assert scan(jsonl, "jsonl", limits) == 4  # each line is fine
    with pytest.raises(InputFormatError, match="JSONL lines 1-2: one chunk of the job .16 rows"):
        list(iter_chunks(jsonl, "jsonl", 16, limits))
    assert len(next(iter_chunks(jsonl, "jsonl", 1, limits))) == 1  # one row per chunk fits
    csv_path = tmp_path / "big.csv"
    csv_path.write_text("text\n" + "".join(f"{text}\n" for _ in range(4)))
    with pytest.raises(InputFormatError, match="rows 0-3: .*PLUGHOST_BATCH_MAX_CHUNK_BYTES"):
        list(iter_chunks(csv_path, "csv", 16, limits))
