"""The rows a batch step gets: the input's columns plus the ones Mixpeek's steps read.

Mixpeek hands every step a DataFrame whose ``data`` column holds the content (the text itself,
or a URL for binary content), with ``mime_type``, ``document_id`` and ``object_id`` beside it.
:func:`supply_columns` gives a chunk of plughost input those columns when it lacks them:

- ``data``: the first non-null value, per row, of the columns the manifest's ``input_mappings``
  name, then ``text``, ``url``, ``uri``; failing those, the input's only column when it holds
  strings or bytes. Bytes (a Parquet binary column) become a ``data:`` URI, which
  ``shared.plugins.open_asset`` / ``download_asset`` turn into a local file: Mixpeek promises
  a URL for binary content, never raw bytes. An input ``data`` column is kept, its bytes
  values turned into URIs the same way.
- ``mime_type``: from ``data`` (:func:`plughost.batch.mime.mime_of`); an input ``mime_type``
  column is kept, its missing values filled.
- ``document_id`` / ``object_id``: ``doc_<row>`` / ``obj_<row>`` (the 0-based input row, the
  number error ranges use), unless the input has them.

:func:`restore_input_columns` undoes this on the steps' output where the steps left the values
as supplied: a supplied column is dropped, a rewritten input column gets its input values back.
So the output stays the input's columns plus what the steps added.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from plughost.batch.mime import DATA_COLUMN, MIME_COLUMN, mime_of, mimes_of
from plughost.batch.protocol import ROW_ID

DOCUMENT_ID = "document_id"
OBJECT_ID = "object_id"
FALLBACK_SOURCES = ("text", "url", "uri")
"""Columns that give ``data`` when the input has none, after the ``input_mappings`` ones."""

# column -> the input's own values (None when plughost added the column)
Supplied = dict[str, "pd.Series | None"]


def data_sources(manifest: Mapping[str, Any] | None) -> list[str]:
    """The columns ``data`` is taken from, in order: ``input_mappings`` values, then
    :data:`FALLBACK_SOURCES`."""
    mappings = (manifest or {}).get("input_mappings")
    named = (
        [v for v in mappings.values() if isinstance(v, str)]
        if isinstance(mappings, Mapping)
        else []
    )
    return list(dict.fromkeys([*named, *FALLBACK_SOURCES]))


def supply_columns(
    frame: pd.DataFrame, sources: Sequence[str] = FALLBACK_SOURCES
) -> tuple[pd.DataFrame, Supplied]:
    """``frame`` (a chunk with the row-id column) with ``data``, ``mime_type``,
    ``document_id`` and ``object_id`` wherever they can be given, and what was supplied."""
    out = frame.copy()
    supplied: Supplied = {}
    _supply_data(out, frame, sources, supplied)
    _supply_mime(out, frame, supplied)
    rows = out[ROW_ID].tolist() if ROW_ID in out.columns else range(len(out))
    for column, prefix in ((DOCUMENT_ID, "doc"), (OBJECT_ID, "obj")):
        if column not in out.columns:
            out[column] = [f"{prefix}_{int(r)}" for r in rows]
            supplied[column] = None
    return out, supplied


def _whole_strings(column: pd.Series) -> bool:
    """Whether ``column`` is a string column without nulls (then it is its own data)."""
    return isinstance(column.dtype, pd.StringDtype) and not column.isna().any()


def _supply_data(
    out: pd.DataFrame, frame: pd.DataFrame, sources: Sequence[str], supplied: Supplied
) -> None:
    if DATA_COLUMN in frame.columns:
        values = list(frame[DATA_COLUMN])
        if any(isinstance(v, bytes | bytearray | memoryview) for v in values):
            out[DATA_COLUMN] = [_as_url(v) for v in values]
            supplied[DATA_COLUMN] = frame[DATA_COLUMN]
        return
    present = [c for c in sources if c in frame.columns]
    if not present:
        own = [c for c in frame.columns if c != ROW_ID]
        if len(own) != 1 or not _holds_content(frame[own[0]]):
            return
        present = own
    if _whole_strings(frame[present[0]]):
        out[DATA_COLUMN] = frame[present[0]]  # every row's first source holds its text
    else:
        out[DATA_COLUMN] = _first_values([frame[c].tolist() for c in present])
    supplied[DATA_COLUMN] = None


def _first_values(columns: list[list[Any]]) -> list[Any]:
    """Per row, the first value of ``columns`` that is not null, bytes as a data: URI; a
    string in the first column is taken as it is (the common row, without the null checks)."""
    return [row[0] if type(row[0]) is str else _as_url(_first_value(row)) for row in zip(*columns)]


def _supply_mime(out: pd.DataFrame, frame: pd.DataFrame, supplied: Supplied) -> None:
    if DATA_COLUMN not in out.columns:
        return
    column = out[DATA_COLUMN]
    if MIME_COLUMN not in frame.columns:
        if _whole_strings(column) and not _maybe_links(column):
            out[MIME_COLUMN] = ["text/plain"] * len(out)  # what mime_of says of plain text
        else:
            out[MIME_COLUMN] = mimes_of(column.tolist())
        supplied[MIME_COLUMN] = None
        return
    data = column.tolist()
    given = list(frame[MIME_COLUMN])
    if any(_missing(m) for m in given):
        out[MIME_COLUMN] = [mime_of(v) if _missing(m) else m for m, v in zip(given, data)]
        supplied[MIME_COLUMN] = frame[MIME_COLUMN]


def _maybe_links(column: pd.Series) -> bool:
    """Whether a row of a string column may be a URL or a data: URI (see :func:`mimes_of`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = pa.Array.from_pandas(column)
    return bool(
        pc.any(pc.or_(pc.match_substring(values, "://"), pc.starts_with(values, "data:"))).as_py()
    )


def _holds_content(column: pd.Series) -> bool:
    values = [v for v in column.head(100) if not _missing(v)]
    return bool(values) and all(isinstance(v, str | bytes) for v in values)


def _first_value(values: Iterable[Any]) -> Any:
    """The first value that is not null; an empty string counts (it is the row's text)."""
    return next((v for v in values if not _missing(v)), None)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, arrays: a value, not a null
        return False


def _as_url(value: Any) -> Any:
    """Bytes as a ``data:`` URI (media type sniffed); anything else unchanged."""
    if not isinstance(value, bytes | bytearray | memoryview):
        return value
    raw = bytes(value)
    media = mime_of(raw) or "application/octet-stream"
    return f"data:{media};base64,{base64.b64encode(raw).decode('ascii')}"


def restore_input_columns(
    output: pd.DataFrame, given: pd.DataFrame, supplied: Supplied
) -> pd.DataFrame:
    """The steps' ``output`` (with the row-id column) without what :func:`supply_columns`
    added, where the steps left it as supplied: added columns are dropped, rewritten input
    columns get the input's values back. A column the steps changed is kept as they left it."""
    if output.empty:
        return output.drop(columns=[c for c in supplied if c in output.columns])
    if not supplied or ROW_ID not in output.columns:
        return output
    ids = output[ROW_ID].tolist()
    # the steps kept every row in order (the usual case): the input's values line up as they are
    in_order = ids == given[ROW_ID].tolist()
    by_row = None if in_order else given.set_index(ROW_ID)
    dropped: list[str] = []
    restored: dict[str, list[Any]] = {}
    for column, original in supplied.items():
        if column not in output.columns or column == ROW_ID or column not in given.columns:
            continue
        as_given = given[column] if by_row is None else by_row[column].reindex(ids)
        if not _unchanged(output[column], as_given):
            continue  # a step wrote its own values: they are part of the output
        if original is None:
            dropped.append(column)
        elif by_row is None:
            restored[column] = list(original)
        else:
            by_id = pd.Series(list(original), index=list(given[ROW_ID]))
            restored[column] = list(by_id.reindex(ids))
    result = output.drop(columns=dropped) if dropped else output
    return result.assign(**restored) if restored else result


def _unchanged(current: pd.Series, as_given: pd.Series) -> bool:
    """Whether ``current`` holds, row by row, the values of ``as_given`` (nulls match nulls)."""
    if isinstance(current.dtype, pd.StringDtype) and isinstance(as_given.dtype, pd.StringDtype):
        # string columns compare in Arrow, without a Python object per value
        left, right = current.array, as_given.array
        return bool(np.all(np.asarray(left == right, dtype=bool) | (left.isna() & right.isna())))
    return all(a is b or _same(a, b) for a, b in zip(current.tolist(), as_given.tolist()))


def _same(a: Any, b: Any) -> bool:
    if _missing(a) and _missing(b):
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def name_the_columns(errors: list[dict[str, Any]], given: pd.DataFrame) -> list[dict[str, Any]]:
    """``errors`` with the columns the steps had added to every KeyError, so a step reading a
    column the input lacks says what it could have read instead."""
    columns = ", ".join(str(c) for c in given.columns if c != ROW_ID)
    return [
        {**e, "message": f"{e['message']} (the rows have columns: {columns})"}
        if str(e.get("message", "")).startswith("KeyError: ")
        else e
        for e in errors
    ]
