"""The settings of namespace quotas (replicas, memory, batch jobs, requests per second) and their defaults; a part of :class:`plughost.config.Settings` like the classes of
:mod:`plughost.config_fields`."""

from __future__ import annotations

from pydantic_settings import BaseSettings


class QuotaFields(BaseSettings):
    """Settings of namespace quotas (replicas, memory, batch jobs, requests per second) and their defaults."""
