"""Bounds on what the batch reader takes from an input (see :mod:`plughost.batch.reader`).

The input of a batch job comes from whoever holds a key: one JSONL line of a gigabyte, JSON
nested a hundred thousand levels deep, bytes that are not UTF-8. The reader reads lines in
bounded pieces (:func:`bounded_lines`: at most ``max_line_bytes + 2`` bytes held, however
long the line), checks the nesting of each record (:func:`check_depth`) and names the line
and file offset of any problem (:func:`not_utf8`). Light on purpose: the scheduler's plan
imports it without the data libraries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from plughost.batch.formats import InputFormatError

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_ROWS = 1_000_000_000
DEFAULT_MAX_PAGE_BYTES = 128 * 1024 * 1024
DEFAULT_MAX_CHUNK_BYTES = 256 * 1024 * 1024
LINE_SETTING = "PLUGHOST_BATCH_MAX_LINE_BYTES"
DEPTH_SETTING = "PLUGHOST_BATCH_MAX_JSON_DEPTH"
ROWS_SETTING = "PLUGHOST_BATCH_MAX_INPUT_ROWS"
CHUNK_SETTING = "PLUGHOST_BATCH_MAX_CHUNK_BYTES"


@dataclass(frozen=True)
class InputLimits:
    """The bounds of one job's reading (the server's settings of :class:`InputFields`)."""

    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH
    max_rows: int = DEFAULT_MAX_ROWS
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES

    @classmethod
    def of(cls, settings: Any) -> InputLimits:
        return cls(
            max_line_bytes=settings.batch_max_line_bytes,
            max_depth=settings.batch_max_json_depth,
            max_rows=settings.batch_max_input_rows,
            max_page_bytes=settings.batch_max_parquet_page_bytes,
            max_chunk_bytes=settings.batch_max_chunk_bytes,
        )


def bounded_lines(src: IO[bytes], max_bytes: int) -> Iterator[tuple[int, int, bytes]]:
    """``(line number, file offset, line)`` for each line of ``src``.

    Each line is read with ``readline(max_bytes + 2)``: a line (without its ``\\n`` or
    ``\\r\\n``) longer than ``max_bytes`` raises InputFormatError as soon as its first
    ``max_bytes + 2`` bytes are read, so no more than that is ever held."""
    number, offset = 0, 0
    while line := src.readline(max_bytes + 2):
        number += 1
        body = len(line) - (line.endswith(b"\n") + line.endswith(b"\r\n"))
        if body > max_bytes:
            raise InputFormatError(
                f"JSONL line {number} (at byte {offset}) is longer than {max_bytes} bytes, the "
                f"longest record {LINE_SETTING} allows; split the record or give large content "
                "by URL",
                {"line": number, "offset": offset, "max_line_bytes": max_bytes},
            )
        yield number, offset, line
        offset += len(line)


def too_deep(number: int, max_depth: int) -> InputFormatError:
    return InputFormatError(
        f"JSONL line {number}: JSON nested deeper than {max_depth} levels, the most "
        f"{DEPTH_SETTING} allows",
        {"line": number, "max_depth": max_depth},
    )


def check_depth(line: bytes, value: Any, number: int, max_depth: int) -> None:
    """InputFormatError when ``value`` (parsed from ``line``) nests more than ``max_depth``
    arrays and objects. A line with no more brackets than that cannot, and is passed
    without walking it; others are walked without recursion."""
    if line.count(b"[") + line.count(b"{") <= max_depth:
        return
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth + 1 > max_depth:
            raise too_deep(number, max_depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def not_utf8(line: bytes, number: int, offset: int) -> InputFormatError | None:
    """The error naming the first byte of ``line`` that is not UTF-8, if there is one."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = line[exc.start : exc.start + 1].hex()
        return InputFormatError(
            f"JSONL line {number}: not UTF-8 text (byte 0x{bad} at column {exc.start + 1}, "
            f"byte {offset + exc.start} of the file); save the input as UTF-8",
            {"line": number, "offset": offset + exc.start},
        )
    return None


def too_many_rows(rows: int, max_rows: int) -> InputFormatError:
    return InputFormatError(
        f"the input holds {rows} rows or more, past the {max_rows} {ROWS_SETTING} allows; "
        "split it into several jobs",
        {"rows": rows, "max_rows": max_rows},
    )


def chunk_too_large(where: str, rows: int, limits: InputLimits) -> InputFormatError:
    return InputFormatError(
        f"{where}: one chunk of the job ({rows} rows) holds more than {limits.max_chunk_bytes} "
        f"bytes, the most {CHUNK_SETTING} allows; lower PLUGHOST_BATCH_CHUNK_ROWS, or give large "
        "content by URL",
        {"max_chunk_bytes": limits.max_chunk_bytes},
    )
