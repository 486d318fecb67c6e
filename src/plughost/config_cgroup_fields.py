"""The settings of cgroup limits of plugin processes (memory, pids, CPU weight) and the namespace's parent cgroup; a part of :class:`plughost.config.Settings` like the classes of
:mod:`plughost.config_fields`."""

from __future__ import annotations

from pydantic_settings import BaseSettings


class CgroupFields(BaseSettings):
    """Settings of cgroup limits of plugin processes (memory, pids, CPU weight) and the namespace's parent cgroup."""
