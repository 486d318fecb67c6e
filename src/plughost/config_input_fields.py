"""The settings of bounds on batch inputs (line length, nesting, Parquet metadata, encodings); a part of :class:`plughost.config.Settings` like the classes of
:mod:`plughost.config_fields`."""

from __future__ import annotations

from pydantic_settings import BaseSettings


class InputFields(BaseSettings):
    """Settings of bounds on batch inputs (line length, nesting, Parquet metadata, encodings)."""
