"""``mime_type`` for rows that have none: text for plain strings, the extension for URLs."""

from __future__ import annotations

import mimetypes
import re
from typing import Any

import pandas as pd

MIME_COLUMN = "mime_type"
DATA_COLUMN = "data"
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$")
_DATA_URI = re.compile(r"^data:([\w.+-]+/[\w.+-]+)[;,]")
_SNIFF = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"%PDF", "application/pdf"),
)


def mime_of(value: Any) -> str | None:
    """The mime type of one ``data`` value: a URL by its extension, a data: URI by its
    header, bytes by their magic number, any other string ``text/plain``."""
    if isinstance(value, bytes):
        return next((m for magic, m in _SNIFF if value.startswith(magic)), None)
    if not isinstance(value, str):
        return None
    if match := _DATA_URI.match(value):
        return match.group(1)
    if _URL.match(value):
        path = value.split("?", 1)[0].split("#", 1)[0]
        return mimetypes.guess_type(path)[0] or "application/octet-stream"
    return "text/plain"


def infer_mime_types(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``mime_type`` column added when it has none: from ``data`` when there
    is such a column, else ``text/plain`` when the only column holds text. Unchanged
    otherwise (and when the column exists, missing values in it are filled from ``data``)."""
    if MIME_COLUMN in frame.columns:
        if DATA_COLUMN in frame.columns and frame[MIME_COLUMN].isna().any():
            frame = frame.copy()
            missing = frame[MIME_COLUMN].isna()
            frame.loc[missing, MIME_COLUMN] = [mime_of(v) for v in frame.loc[missing, DATA_COLUMN]]
        return frame
    if DATA_COLUMN in frame.columns:
        return frame.assign(**{MIME_COLUMN: [mime_of(v) for v in frame[DATA_COLUMN]]})
    if len(frame.columns) == 1:
        column = frame[frame.columns[0]]
        if all(isinstance(v, str) for v in column.head(100)):
            return frame.assign(**{MIME_COLUMN: "text/plain"})
    return frame
