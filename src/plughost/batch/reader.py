"""Streaming readers: an input file as pandas chunks of a fixed number of rows.

Never the whole file in memory: Parquet by record batches (page by page), CSV by pyarrow's
streaming reader, JSONL line by line, each line read in bounded pieces. What one record may be
(its size, its nesting, its encoding), what a chunk and a Parquet page may hold and how many
rows an input may have are bounded by :class:`~plughost.batch.reader_limits.InputLimits`; a
Parquet footer and its page headers are checked before any data is read
(:mod:`.parquet_checks`). Chunk ``k`` always holds the same rows (``k * rows`` onward), so a
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
from plughost.batch.reader_limits import (
    InputLimits,
    bounded_lines,
    check_depth,
    chunk_too_large,
    not_utf8,
    too_deep,
    too_many_rows,
)

DEFAULT_LIMITS = InputLimits()

CSV_BLOCK_BYTES = 1 << 20
SCAN_ROWS = 1024  # rows held at once while scanning (a chunk, not the file)


def iter_chunks(
    path: Path, fmt: str, rows: int, limits: InputLimits | None = None
) -> Iterator[pd.DataFrame]:
    """The input as frames of ``rows`` rows (the last may be shorter), in file order, within
    ``limits`` (None: the defaults)."""
    limits = limits or DEFAULT_LIMITS
    if fmt == "parquet":
        return _rechunk(_parquet_tables(path, rows, limits), rows, limits)
    if fmt == "csv":
        return _rechunk(_csv_tables(path, limits), rows, limits)
    if fmt == "jsonl":
        return _jsonl_frames(path, rows, limits)
    raise InputFormatError(f"unknown input format {fmt!r}")


def iter_tables(
    path: Path, fmt: str, rows: int, limits: InputLimits | None = None
) -> Iterator[pa.Table]:
    """The chunks of :func:`iter_chunks` as the workers get them: Arrow tables (a JSONL chunk
    goes from its records to Arrow once, by the type check it passes anyway)."""
    limits = limits or DEFAULT_LIMITS
    if fmt == "jsonl":
        return (
            _table(records, first, last)
            for records, first, last in _jsonl_records(path, rows, limits)
        )
    return (
        pa.Table.from_pandas(c, preserve_index=False) for c in iter_chunks(path, fmt, rows, limits)
    )


def scan(path: Path, fmt: str, limits: InputLimits | None = None) -> int:
    """Read the whole input once (Parquet: its footer only, checked) and return its row count.

    Raises InputFormatError at the first malformed or over-long line, past the row limit, or
    when the input has no rows."""
    limits = limits or DEFAULT_LIMITS
    if fmt == "parquet":
        return int(_parquet_file(path, limits).metadata.num_rows)
    if fmt == "jsonl":
        return _scan_jsonl(path, limits)
    total = 0
    for chunk in iter_chunks(path, fmt, SCAN_ROWS, limits):
        total += len(chunk)
        if total > limits.max_rows:
            raise too_many_rows(total, limits.max_rows)
    if total == 0:
        raise InputFormatError("the input has no rows")
    return total


def _scan_jsonl(path: Path, limits: InputLimits) -> int:
    """Parse every line (no frames: a column mixing types is caught when the job reads it)."""
    total = 0
    with path.open("rb") as src:
        for number, offset, line in bounded_lines(src, limits.max_line_bytes):
            if not line.isspace():
                _jsonl_record(line, number, offset, limits)
                total += 1
                if total > limits.max_rows:
                    raise too_many_rows(total, limits.max_rows)
    if total == 0:
        raise InputFormatError("the input has no rows")
    return total


# -- Parquet ----------------------------------------------------------------------------------
def _parquet_file(path: Path, limits: InputLimits) -> Any:
    from plughost.batch.parquet_checks import checked_parquet_file

    return checked_parquet_file(path, limits)


def _parquet_tables(path: Path, rows: int, limits: InputLimits) -> Iterator[pa.Table]:
    """Record batches of ``rows`` rows, read page by page (never a whole row group); the rows
    read must be the rows the footer declares."""
    source = _parquet_file(path, limits)
    declared = int(source.metadata.num_rows)
    read = 0
    try:
        for batch in source.iter_batches(batch_size=rows):
            read += batch.num_rows
            if read > declared:
                break
            yield pa.Table.from_batches([batch])
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputFormatError(f"the Parquet input is corrupt: {exc}") from exc
    if read != declared:
        raise InputFormatError(
            f"the Parquet input is corrupt: its footer declares {declared} rows, its data "
            f"holds {'more' if read > declared else read}",
            {"declared_rows": declared},
        )


# -- CSV --------------------------------------------------------------------------------------
def _csv_tables(path: Path, limits: InputLimits) -> Iterator[pa.Table]:
    """pyarrow's streaming reader, in blocks of the longest record allowed (a row must fit in
    one block: a longer one fails as over-long)."""
    import pyarrow.csv as pacsv

    done = 0
    block = max(CSV_BLOCK_BYTES, limits.max_line_bytes)
    try:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=block))
        for batch in reader:
            if any(
                pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) for f in batch.schema
            ):
                # pyarrow types a column holding bytes that are not UTF-8 as binary
                raise pa.ArrowInvalid("a column holds bytes that are not UTF-8 text")
            done += batch.num_rows
            yield pa.Table.from_batches([batch])
    except pa.ArrowInvalid as exc:
        raise InputFormatError(_csv_problem(path, str(exc), done, limits)) from exc


def _csv_problem(path: Path, message: str, done: int, limits: InputLimits) -> str:
    """pyarrow's CSV message with the offending line found by a slower, exact pass: a line past
    the limit or not UTF-8 (read in bounded pieces), else a row of the wrong width."""
    message = message.removeprefix("CSV parse error: ")
    with path.open("rb") as raw:
        try:
            for number, offset, line in bounded_lines(raw, limits.max_line_bytes):
                if problem := not_utf8(line, number, offset):
                    return problem.message.replace("JSONL", "CSV", 1)
        except InputFormatError as exc:
            return exc.message.replace("JSONL", "CSV", 1)
    with path.open(newline="", encoding="utf-8", errors="replace") as src:
        reader = csv.reader(src)
        try:
            header = next(reader, [])
            for fields in reader:
                if fields and len(fields) != len(header):
                    return (
                        f"CSV line {reader.line_num}: expected {len(header)} columns, "
                        f"got {len(fields)}"
                    )
        except csv.Error as exc:  # a field past the csv module's own limit
            return f"CSV line {reader.line_num}: {exc}"
    return f"CSV input malformed after data row {done}: {message}"


# -- JSONL ------------------------------------------------------------------------------------
def _jsonl_frames(path: Path, rows: int, limits: InputLimits) -> Iterator[pd.DataFrame]:
    for records, first, last in _jsonl_records(path, rows, limits):
        yield _frame(records, first, last)


def _jsonl_records(
    path: Path, rows: int, limits: InputLimits
) -> Iterator[tuple[list[dict[str, Any]], int, int]]:
    """Records of ``rows`` lines (the last may hold fewer) with their first and last line."""
    records: list[dict[str, Any]] = []
    first_line = number = 1
    held = 0  # bytes of the chunk's lines
    with path.open("rb") as src:
        for number, offset, line in bounded_lines(src, limits.max_line_bytes):
            if line.isspace():
                continue
            if not records:
                first_line, held = number, 0
            held += len(line)
            if held > limits.max_chunk_bytes:
                raise chunk_too_large(f"JSONL lines {first_line}-{number}", rows, limits)
            records.append(_jsonl_record(line, number, offset, limits))
            if len(records) == rows:
                yield records, first_line, number
                records = []
    if records:
        yield records, first_line, number


def _jsonl_record(
    line: bytes, number: int, offset: int = 0, limits: InputLimits = DEFAULT_LIMITS
) -> dict[str, Any]:
    if number == 1 and line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]  # a UTF-8 byte order mark
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        if problem := not_utf8(line, number, offset):
            raise problem from None
        if str(exc).startswith(("depth limit", "recursion limit")):
            raise too_deep(number, limits.max_depth) from None
        raise InputFormatError(
            f"JSONL line {number}: not valid JSON ({exc})", {"line": number}
        ) from exc
    check_depth(line, value, number, limits.max_depth)
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
def _rechunk(tables: Iterator[pa.Table], rows: int, limits: InputLimits) -> Iterator[pd.DataFrame]:
    pending: list[pa.Table] = []
    held = done = 0
    for table in tables:
        pending.append(table)
        held += table.num_rows
        while held >= rows:
            merged = pa.concat_tables(pending)
            yield _bounded(merged.slice(0, rows), done, rows, limits).to_pandas()
            done += rows
            rest = merged.slice(rows)
            pending, held = ([rest] if rest.num_rows else []), rest.num_rows
    if held:
        yield _bounded(pa.concat_tables(pending), done, rows, limits).to_pandas()


def _bounded(chunk: pa.Table, first: int, rows: int, limits: InputLimits) -> pa.Table:
    if chunk.nbytes > limits.max_chunk_bytes:
        last = first + chunk.num_rows - 1
        raise chunk_too_large(f"rows {first}-{last}", rows, limits)
    return chunk
