"""The settings of cgroup limits of plugin processes (memory, pids, CPU weight) and the namespace's parent cgroup; a part of :class:`plughost.config.Settings` like the classes of
:mod:`plughost.config_fields`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings


class CgroupFields(BaseSettings):
    """Settings of cgroup limits of plugin processes (memory, pids, CPU weight) and the namespace's parent cgroup."""

    cgroups: Literal["auto", "off"] = Field(
        default="auto",
        description="cgroup limits of replicas and batch workers (plughost.sandbox.cgroups): "
        "auto uses cgroup v2, else v1, when writable, and drops the address-space rlimit; "
        "off (or no writable cgroups) keeps the address-space rlimit instead",
    )
    cgroup_pids_max: int = Field(
        default=512,
        gt=0,
        description="pids.max of each replica's and batch worker's cgroup (processes and "
        "threads it may hold at once)",
    )
    cgroup_cpu_weight: int = Field(
        default=100,
        ge=1,
        le=10000,
        description="CPU weight of each replica's and batch worker's cgroup (cgroup v2 "
        "cpu.weight; v1 cpu.shares gets weight*1024/100)",
    )
    cgroup_namespace_memory_mb: int = Field(
        default=0,
        ge=0,
        description="memory cap of a namespace's parent cgroup, over the sum of its plugin "
        "processes, when the namespace has no quota of its own; 0: no namespace cap",
    )
