"""The settings of bounds on the logs API and its stream, status streams and the dashboard; a part of :class:`plughost.config.Settings` like the classes of
:mod:`plughost.config_fields`."""

from __future__ import annotations

from pydantic_settings import BaseSettings


class SurfaceFields(BaseSettings):
    """Settings of bounds on the logs API and its stream, status streams and the dashboard."""
