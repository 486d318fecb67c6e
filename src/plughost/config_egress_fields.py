"""The settings of the egress proxy: which hosts a namespace's plugins may reach, and how; a part of :class:`plughost.config.Settings` like the classes of
:mod:`plughost.config_fields`."""

from __future__ import annotations

from pydantic_settings import BaseSettings


class EgressFields(BaseSettings):
    """Settings of the egress proxy: which hosts a namespace's plugins may reach, and how."""
