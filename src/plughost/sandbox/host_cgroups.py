"""The cgroup part of :class:`plughost.sandbox.host.Sandbox` (plughost.sandbox.cgroups):
a lease per plugin process, its entry argv, a pool member's move at claim, the release."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from plughost.sandbox.cgroups import CgroupTree, start_cgroups
from plughost.sandbox.policy import CgroupLease, SandboxConfig, SandboxLaunch

if TYPE_CHECKING:
    from plughost.config import Settings

log = logging.getLogger("plughost.sandbox")


class SandboxCgroups:
    """Mixed into Sandbox: its ``config``, ``enabled``, ``layers`` and ``cgroups``."""

    config: SandboxConfig
    layers: dict[str, bool]
    cgroups: CgroupTree | None

    @property
    def enabled(self) -> bool:
        raise NotImplementedError

    # -- cgroups (plughost.sandbox.cgroups) ------------------------------------------------------
    def start_cgroups(self) -> None:
        """Set up this server's cgroups unless off or not writable (the rlimit stays)."""
        if self.enabled and self.cgroups is None:
            c = self.config
            self.cgroups = start_cgroups(
                c.cgroups,
                c.cgroup_tag,
                c.cgroup_pids_max,
                c.cgroup_cpu_weight,
                c.cgroup_namespace_memory_mb,
            )

    @property
    def memory_layer(self) -> str:
        """What bounds a plugin's memory: ``cgroup-v1``, ``cgroup-v2``, ``rlimit`` or ``none``."""
        if self.cgroups is not None:
            return self.cgroups.label
        return "rlimit" if self.enabled and self.layers.get("rlimits") else "none"

    def _cgroup_lease(
        self,
        namespace_id: str | None,
        memory_gb: float,
        pool: bool = False,
        name: str | None = None,
    ) -> CgroupLease | None:
        if self.cgroups is None:
            return None
        try:
            return self.cgroups.lease(namespace_id, round(memory_gb * 1024), pool=pool, name=name)
        except OSError as exc:  # the rlimit holds this process instead
            log.error("cgroups: no cgroup for a plugin process (%s); it gets the rlimit", exc)
            return None

    def _in_cgroup(self, launch: SandboxLaunch, lease: CgroupLease | None) -> SandboxLaunch:
        if lease is None or self.cgroups is None:
            return launch
        return replace(launch, enter=self.cgroups.enter_argv(lease), cgroup=lease)

    def claim_cgroup(self, launch: SandboxLaunch | None, namespace_id: str | None) -> None:
        """Move a pool member (blocked on its claim, no plugin loaded) into a cgroup of the
        claiming namespace (OSError when it cannot be: the claim fails)."""
        if launch is not None and launch.cgroup is not None and self.cgroups is not None:
            self.cgroups.move(launch.cgroup, namespace_id)

    def _release_cgroup(self, launch: SandboxLaunch | None) -> None:
        if launch is not None and launch.cgroup is not None and self.cgroups is not None:
            self.cgroups.release(launch.cgroup)

    def cap_namespaces(self, memory_mb: Callable[[str], int | None]) -> None:
        """Where a namespace's parent cgroup reads its memory cap (MiB; None or 0: the
        default ``PLUGHOST_CGROUP_NAMESPACE_MEMORY_MB``): the namespace quota."""
        if self.cgroups is not None:
            self.cgroups.namespace_memory_mb = memory_mb

    def close_cgroups(self) -> None:
        """Remove this server's cgroups where empty (clean shutdown)."""
        if self.cgroups is not None:
            self.cgroups.close()


def cgroup_config(settings: Settings) -> dict[str, Any]:
    """The cgroup part of the sandbox settings (the tag: this server home's hash)."""
    home = str(settings.resolved_home).encode()
    return {
        "cgroups": settings.cgroups,
        "cgroup_pids_max": settings.cgroup_pids_max,
        "cgroup_cpu_weight": settings.cgroup_cpu_weight,
        "cgroup_namespace_memory_mb": settings.cgroup_namespace_memory_mb,
        "cgroup_tag": hashlib.sha256(home).hexdigest()[:12],
    }
