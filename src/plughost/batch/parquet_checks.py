"""A Parquet input's footer checked before any of its data is read.

The footer is the file's own account of itself, and a hostile one lies: billions of rows in
a file of kilobytes, column chunks that claim more bytes than the file holds, a schema nested
past any real record. :func:`checked_parquet_file` opens the file for page-by-page reading
(no pre-buffering of whole row groups: ``pre_buffer=False`` and a bounded ``buffer_size``) and
refuses, from the metadata alone:

- more rows than ``PLUGHOST_BATCH_MAX_INPUT_ROWS``, or row groups whose rows do not add up to
  the file's;
- a column chunk outside the file's data, or of negative size;
- a column chunk whose values average more bytes than the longest record allowed
  (``PLUGHOST_BATCH_MAX_LINE_BYTES``): the reader would hold one such value whole;
- a schema nested deeper than ``PLUGHOST_BATCH_MAX_JSON_DEPTH``;
- a page past ``PLUGHOST_BATCH_MAX_PARQUET_PAGE_BYTES`` (the page headers are read, not the
  pages: :mod:`.parquet_pages`).

The reader then checks that the data holds the rows the footer declares
(:func:`plughost.batch.reader.iter_chunks`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from plughost.batch.formats import InputFormatError
from plughost.batch.parquet_pages import check_pages
from plughost.batch.reader_limits import (
    DEPTH_SETTING,
    LINE_SETTING,
    InputLimits,
    too_many_rows,
)

READ_BUFFER_BYTES = 1 << 20
"""Bytes read at once from a column chunk: its pages stream through this buffer."""
HEAD_BYTES = 4  # the leading PAR1


def checked_parquet_file(path: Path, limits: InputLimits) -> Any:
    """``path`` as a ``pyarrow.parquet.ParquetFile`` read page by page, its footer checked."""
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(path, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputFormatError(f"the input is not a readable Parquet file: {exc}") from exc
    meta = source.metadata
    check_metadata(meta, path.stat().st_size, limits)
    with path.open("rb") as raw:
        for index in range(meta.num_row_groups):
            group = meta.row_group(index)
            for column in range(group.num_columns):
                chunk = group.column(column)
                where = f"row group {index} column {chunk.path_in_schema!r}"
                start = _start(chunk)
                check_pages(raw, start, chunk.total_compressed_size, limits.max_page_bytes, where)
    return source


def _corrupt(message: str, **details: Any) -> InputFormatError:
    return InputFormatError(f"the Parquet input is corrupt: {message}", details)


def check_metadata(meta: Any, file_size: int, limits: InputLimits) -> None:
    """InputFormatError when the footer ``meta`` of a ``file_size``-byte file is past the
    limits or inconsistent with itself or the file."""
    declared = int(meta.num_rows)
    if declared < 0:
        raise _corrupt(f"its footer declares {declared} rows")
    if declared > limits.max_rows:
        raise too_many_rows(declared, limits.max_rows)
    data_end = file_size - 8 - int(meta.serialized_size)  # footer, its length and PAR1 follow
    total = 0
    for index in range(meta.num_row_groups):
        group = meta.row_group(index)
        if group.num_rows < 0:
            raise _corrupt(f"row group {index} declares {group.num_rows} rows")
        total += group.num_rows
        for column in range(group.num_columns):
            _check_chunk(group.column(column), index, data_end, limits)
    if total != declared:
        raise _corrupt(
            f"its footer declares {declared} rows, its row groups {total}",
            declared_rows=declared,
            row_group_rows=total,
        )
    depth = _schema_depth(meta.schema.to_arrow_schema())
    if depth > limits.max_depth:
        raise InputFormatError(
            f"the Parquet schema nests {depth} levels, past the {limits.max_depth} "
            f"{DEPTH_SETTING} allows",
            {"depth": depth, "max_depth": limits.max_depth},
        )


def _check_chunk(chunk: Any, group: int, data_end: int, limits: InputLimits) -> None:
    name = chunk.path_in_schema
    start = _start(chunk)
    size = chunk.total_compressed_size
    if size < 0 or chunk.total_uncompressed_size < 0 or chunk.num_values < 0:
        raise _corrupt(f"row group {group} column {name!r} declares a negative size")
    if start < HEAD_BYTES or start + size > data_end:
        raise _corrupt(
            f"row group {group} column {name!r} claims bytes {start}-{start + size}, outside "
            f"the data of the file (bytes {HEAD_BYTES}-{data_end})",
            row_group=group,
            column=name,
        )
    per_value = chunk.total_uncompressed_size / max(1, chunk.num_values)
    if per_value > limits.max_line_bytes:
        raise InputFormatError(
            f"Parquet row group {group} column {name!r}: its values average {int(per_value)} "
            f"bytes, past the longest record {LINE_SETTING} allows ({limits.max_line_bytes})",
            {"row_group": group, "column": name, "max_line_bytes": limits.max_line_bytes},
        )


def _start(chunk: Any) -> int:
    """Where a column chunk's first page (its dictionary page, if any) begins."""
    start = int(chunk.data_page_offset)
    if chunk.has_dictionary_page and chunk.dictionary_page_offset:
        start = min(start, int(chunk.dictionary_page_offset))
    return start


def _schema_depth(schema: pa.Schema) -> int:
    """The deepest nesting of the schema's fields (a flat column is 1), without recursion."""
    deepest = 0
    stack: list[tuple[pa.DataType, int]] = [(field.type, 1) for field in schema]
    while stack:
        kind, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((kind.field(i).type, depth + 1) for i in range(kind.num_fields))
    return deepest
