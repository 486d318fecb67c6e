"""The settings of bounds on batch inputs (line length, nesting, Parquet metadata, encodings); a part of :class:`plughost.config.Settings` like the classes of
:mod:`plughost.config_fields`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

MIB = 1024 * 1024


class InputFields(BaseSettings):
    """Settings of bounds on batch inputs (line length, nesting, Parquet metadata, encodings)."""

    batch_max_line_bytes: int = Field(
        default=16 * MIB,
        ge=1024,
        description="longest record of a batch input (16 MiB): a JSONL line, a CSV row, a "
        "Parquet value's average size. Read in bounded pieces: a longer line fails the job "
        "without being held whole. A record is one document (text, a URL, a small data: "
        "URI); the server holds a few copies of it while it parses and converts it",
    )
    batch_max_json_depth: int = Field(
        default=64,
        ge=1,
        le=1000,
        description="deepest nesting of arrays and objects in a JSONL record or a Parquet "
        "schema; deeper input fails the job with the line named",
    )
    batch_max_parquet_page_bytes: int = Field(
        default=128 * MIB,
        ge=MIB,
        description="largest page of a Parquet input (128 MiB), checked from the page headers "
        "before any data is read: the reader holds a page whole, compressed and decompressed. "
        "pyarrow writes pages of about 1 MiB (past this only for rows averaging 128 KiB)",
    )
    batch_max_chunk_bytes: int = Field(
        default=256 * MIB,
        ge=MIB,
        description="most bytes one chunk of a batch input may hold (256 MiB; a chunk is "
        "PLUGHOST_BATCH_CHUNK_ROWS rows): the server reads a chunk whole and frames it for a "
        "worker, so many large records in a row fail the job instead of filling memory",
    )
    batch_max_input_rows: int = Field(
        default=1_000_000_000,
        gt=0,
        description="most rows one batch input may hold (counted while the job scans it; a "
        "Parquet footer declaring more is refused before its data is read)",
    )
