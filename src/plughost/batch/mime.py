"""The ``mime_type`` of a ``data`` value: text for plain strings, the extension for URLs.

batch/rows.py fills the column with it for rows that have none."""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterable
from typing import Any

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


def mimes_of(values: Iterable[Any]) -> list[str | None]:
    """:func:`mime_of` of each value; a string that can be neither a URL (no ``://``) nor a
    data: URI is ``text/plain`` without the regular expressions (most rows are plain text)."""
    return [
        "text/plain"
        if type(v) is str and "://" not in v and not v.startswith("data:")
        else mime_of(v)
        for v in values
    ]
