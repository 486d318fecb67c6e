"""The settings of policy on what plugin environments may install, and model archives; a part of :class:`plughost.config.Settings` like the classes of
:mod:`plughost.config_fields`."""

from __future__ import annotations

from pydantic_settings import BaseSettings


class SupplyFields(BaseSettings):
    """Settings of policy on what plugin environments may install, and model archives."""
