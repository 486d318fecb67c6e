"""Streaming readers: an input file as pandas chunks of a fixed number of rows.

Never the whole file in memory: Parquet by record batches, CSV by pyarrow's streaming
reader, JSONL line by line. Chunk ``k`` always holds the same rows (``k * rows`` onward), so a
restarted job can skip the chunks it already wrote. Problems raise InputFormatError naming
the line (JSONL, CSV) or column. Which columns a plugin reads is not checked: the manifest's
``input_mappings`` are metadata (batch/rows.py gives the steps Mixpeek's columns).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa

from plughost.batch.formats import InputFormatError
from plughost.batch.mime import DATA_COLUMN

CSV_BLOCK_BYTES = 1 << 20
SCAN_ROWS = 1024  # rows held at once while scanning (a chunk, not the file)


def iter_chunks(path: Path, fmt: str, rows: int) -> Iterator[pd.DataFrame]:
    """The input as frames of ``rows`` rows (the last may be shorter), in file order."""
    if fmt == "parquet":
        return _rechunk(_parquet_tables(path, rows), rows)
    if fmt == "csv":
        return _rechunk(_csv_tables(path), rows)
    if fmt == "jsonl":
        return _jsonl_frames(path, rows)
    raise InputFormatError(f"unknown input format {fmt!r}")


def iter_tables(path: Path, fmt: str, rows: int) -> Iterator[pa.Table]:
    """The chunks of :func:`iter_chunks` as the workers get them: Arrow tables (a JSONL chunk
    goes from its records to Arrow once, by the type check it passes anyway)."""
    if fmt == "jsonl":
        return (_table(records, first, last) for records, first, last in _jsonl_records(path, rows))
    return (pa.Table.from_pandas(c, preserve_index=False) for c in iter_chunks(path, fmt, rows))


def scan(path: Path, fmt: str) -> int:
    """Read the whole input once (Parquet: its footer only) and return its row count.

    Raises InputFormatError at the first malformed line, or when the input has no rows."""
    if fmt == "parquet":
        return int(_parquet_file(path).metadata.num_rows)
    if fmt == "jsonl":
        return _scan_jsonl(path)
    total = 0
    for chunk in iter_chunks(path, fmt, SCAN_ROWS):
        total += len(chunk)
    if total == 0:
        raise InputFormatError("the input has no rows")
    return total


def _scan_jsonl(path: Path) -> int:
    """Parse every line (no frames: a column mixing types is caught when the job reads it)."""
    total = 0
    with path.open("rb") as src:
        for number, line in enumerate(src, start=1):
            if line.strip():
                _jsonl_record(line, number)
                total += 1
    if total == 0:
        raise InputFormatError("the input has no rows")
    return total


# -- Parquet ----------------------------------------------------------------------------------
def _parquet_file(path: Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputFormatError(f"the input is not a readable Parquet file: {exc}") from exc


def _parquet_tables(path: Path, rows: int) -> Iterator[pa.Table]:
    source = _parquet_file(path)
    try:
        for batch in source.iter_batches(batch_size=rows):
            yield pa.Table.from_batches([batch])
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputFormatError(f"the Parquet input is corrupt: {exc}") from exc


# -- CSV --------------------------------------------------------------------------------------
def _csv_tables(path: Path) -> Iterator[pa.Table]:
    import pyarrow.csv as pacsv

    done = 0
    try:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES))
        for batch in reader:
            done += batch.num_rows
            yield pa.Table.from_batches([batch])
    except pa.ArrowInvalid as exc:
        raise InputFormatError(_csv_problem(path, str(exc), done)) from exc


def _csv_problem(path: Path, message: str, done: int) -> str:
    """pyarrow's CSV message with the offending line number found by a slower, exact pass."""
    message = message.removeprefix("CSV parse error: ")
    with path.open(newline="", encoding="utf-8", errors="replace") as src:
        reader = csv.reader(src)
        header = next(reader, [])
        for fields in reader:
            if fields and len(fields) != len(header):
                return (
                    f"CSV line {reader.line_num}: expected {len(header)} columns, got {len(fields)}"
                )
    return f"CSV input malformed after data row {done}: {message}"


# -- JSONL ------------------------------------------------------------------------------------
def _jsonl_frames(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    for records, first, last in _jsonl_records(path, rows):
        yield _frame(records, first, last)


def _jsonl_records(path: Path, rows: int) -> Iterator[tuple[list[dict[str, Any]], int, int]]:
    """Records of ``rows`` lines (the last may hold fewer) with their first and last line."""
    records: list[dict[str, Any]] = []
    first_line = 1
    with path.open("rb") as src:
        for number, line in enumerate(src, start=1):
            if not line.strip():
                continue
            if not records:
                first_line = number
            records.append(_jsonl_record(line, number))
            if len(records) == rows:
                yield records, first_line, number
                records = []
    if records:
        yield records, first_line, number


def _jsonl_record(line: bytes, number: int) -> dict[str, Any]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InputFormatError(
            f"JSONL line {number}: not valid JSON ({exc})", {"line": number}
        ) from exc
    if isinstance(value, str):
        return {DATA_COLUMN: value}
    if not isinstance(value, dict):
        raise InputFormatError(
            f"JSONL line {number}: expected a JSON object or string, got {type(value).__name__}",
            {"line": number},
        )
    return value


def _frame(records: list[dict[str, Any]], first: int, last: int) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records)
    _checked(frame, first, last)
    return frame


def _table(records: list[dict[str, Any]], first: int, last: int) -> pa.Table:
    """The records as Arrow, one column per key (in the order keys first appear, a row without
    one holds null); records Arrow cannot type that way go through pandas, whose check names
    the offending column."""
    names = dict.fromkeys(key for record in records for key in record)
    try:
        return pa.table({name: pa.array([r.get(name) for r in records]) for name in names})
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
        return _checked(pd.DataFrame.from_records(records), first, last)


def _checked(frame: pd.DataFrame, first: int, last: int) -> pa.Table:
    """``frame`` as Arrow; InputFormatError naming the column whose values mix types."""
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        column = _bad_column(frame)
        raise InputFormatError(
            f"JSONL lines {first}-{last}: column {column!r} mixes value types ({exc})",
            {"column": column, "lines": [first, last]},
        ) from exc


def _bad_column(frame: pd.DataFrame) -> str:
    for name in frame.columns:
        try:
            pa.array(frame[name], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return str(name)
    return "?"


# -- chunking ---------------------------------------------------------------------------------
def _rechunk(tables: Iterator[pa.Table], rows: int) -> Iterator[pd.DataFrame]:
    pending: list[pa.Table] = []
    held = 0
    for table in tables:
        pending.append(table)
        held += table.num_rows
        while held >= rows:
            merged = pa.concat_tables(pending)
            yield merged.slice(0, rows).to_pandas()
            rest = merged.slice(rows)
            pending, held = ([rest] if rest.num_rows else []), rest.num_rows
    if held:
        yield pa.concat_tables(pending).to_pandas()
