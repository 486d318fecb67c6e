"""The server's view of the sandbox: which layers this machine gives, and how to wrap a process.

Built once at start-up (:meth:`Sandbox.create`): in ``auto`` and ``strict`` mode a probe runs
the self-test inside the full wrapping and records which layers actually hold; ``auto``
logs each missing layer as an error and runs with the rest, ``strict`` refuses to start
unless all hold, ``off`` wraps nothing (and says so loudly).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plughost.egress.binding import egress_binding, egress_env, egress_listed, egress_unbind
from plughost.sandbox import LAYERS
from plughost.sandbox.bwrap import (
    PLUGIN_MOUNT,
    MountPlan,
    bwrap_command,
    plughost_root,
    runtime_paths,
)
from plughost.sandbox.cgroups import CgroupTree
from plughost.sandbox.host_cgroups import SandboxCgroups, cgroup_config
from plughost.sandbox.models import ModelShare
from plughost.sandbox.policy import MIB, RunnerPolicy, SandboxConfig, SandboxLaunch, rlimits_for
from plughost.sandbox.probe import ProbeResult, take_probe
from plughost.sandbox.uids import UidPool

if TYPE_CHECKING:
    from plughost.config import Settings
    from plughost.egress.proxy import EgressProxy

log = logging.getLogger("plughost.sandbox")

MODES = ("off", "auto", "strict")
IN_PROCESS_LAYERS = ("uid", "seccomp", "rlimits")
SANDBOX_ENV = {
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "USER": "plugin",
    "LOGNAME": "plugin",
    # Each glibc malloc arena reserves 64 MiB of address space: keep RLIMIT_AS for real data.
    "MALLOC_ARENA_MAX": "2",
}


class SandboxUnavailable(RuntimeError):
    """Strict mode and a layer is missing: the server must not start."""


@dataclass
class Sandbox(SandboxCgroups):
    """Layers measured on this machine and the wrapping every plugin process gets."""

    config: SandboxConfig
    layers: dict[str, bool]
    bwrap_path: str | None = None
    share_net_only: bool = False
    uids: UidPool | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # the server's egress proxy (plughost.egress), set by the wiring; None: no allowlists
    egress_proxy: EgressProxy | None = None
    # the replicas' and batch workers' cgroups (plughost.sandbox.cgroups); None: rlimit
    cgroups: CgroupTree | None = None

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def create(cls, config: SandboxConfig) -> Sandbox:
        """Probe the machine (unless off), log missing layers; SandboxUnavailable in strict."""
        if config.mode not in MODES:
            raise ValueError(f"PLUGHOST_SANDBOX must be one of {', '.join(MODES)}")
        if config.mode == "off":
            log.warning(
                "SANDBOX OFF (PLUGHOST_SANDBOX=off): plugin code runs with the server's "
                "privileges, network and file system. Run only plugins you trust."
            )
            return cls(config, dict.fromkeys(LAYERS, False))
        sandbox = cls.from_probe(config, take_probe(config))
        sandbox.start_cgroups()
        return sandbox

    @classmethod
    def from_probe(cls, config: SandboxConfig, result: ProbeResult) -> Sandbox:
        """The sandbox a probe's ``result`` measured; logs missing layers, SandboxUnavailable
        in strict mode when one is missing."""
        sandbox = cls(
            config,
            result.layers,
            bwrap_path=result.bwrap_path,
            share_net_only=result.share_net_only,
            uids=UidPool(config.uid_base, config.uid_count) if result.layers.get("uid") else None,
            details=result.details,
        )
        sandbox._report()
        return sandbox

    def _report(self) -> None:
        missing = self.missing
        if not missing:
            log.info("sandbox (%s): all layers active: %s", self.mode, ", ".join(LAYERS))
            return
        for layer in missing:
            log.error(
                "sandbox (%s): layer %r is NOT available on this machine: %s",
                self.mode,
                layer,
                self.details.get("reasons", {}).get(layer, "see SECURITY.md"),
            )
        if self.mode == "strict":
            raise SandboxUnavailable(
                "PLUGHOST_SANDBOX=strict and these sandbox layers are missing: "
                + ", ".join(missing)
            )

    # -- state -------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def enabled(self) -> bool:
        return self.config.mode != "off"

    @property
    def wraps(self) -> bool:
        """Whether plugin processes run in bubblewrap here."""
        return self.enabled and bool(self.layers.get("bwrap")) and self.bwrap_path is not None

    @property
    def missing(self) -> list[str]:
        return [layer for layer in LAYERS if not self.layers.get(layer)]

    def status(self) -> dict[str, Any]:
        """What ``GET /healthz`` reports of this machine (the runtime adds the backend's
        report per node, :meth:`plughost.server.wiring.Runtime.sandbox_status`)."""
        status: dict[str, Any] = {
            "mode": self.mode,
            "layers": {layer: bool(self.layers.get(layer)) for layer in LAYERS},
            "egress_namespaces": sorted(self.config.egress_namespaces),
            "egress_allowlists": self.egress_proxy.allowlisted() if self.egress_proxy else [],
            "memory_limit": self.memory_layer,
        }
        return status

    @property
    def models(self) -> ModelShare:
        """The namespace model folders and Hugging Face cache plugin processes see."""
        return model_share(self.config)

    def egress_allowed(self, namespace_id: str | None) -> bool:
        return namespace_id is not None and namespace_id in self.config.egress_namespaces

    # -- wrapping ----------------------------------------------------------------------------
    def _policy(
        self, uid: int | None, memory_gb: float, allow_inet: bool, cgroup: bool = False
    ) -> RunnerPolicy:
        # a cgroup bounds resident memory: no address-space rlimit (it refuses mmaps)
        rlimits = rlimits_for(
            self.config, memory_gb, own_uid=uid is not None, address_space=not cgroup
        )
        strict = self.mode == "strict"
        return RunnerPolicy(
            uid=uid,
            gid=uid,
            rlimits=rlimits,
            seccomp=bool(self.layers.get("seccomp")),
            allow_inet=allow_inet,
            required=tuple(x for x in IN_PROCESS_LAYERS if strict or self.layers.get(x)),
        )

    def _prefix(
        self,
        plugin_dir: Path,
        share_net: bool,
        env_dir: Path | None = None,
        detached: bool = False,
        namespace_id: str | None = None,
        egress_dir: Path | None = None,
    ) -> tuple[list[str], str]:
        """The bwrap argv prefix and the plugin folder as the process will see it (the
        plugin environment ``env_dir``, if any, is seen at ``bwrap.ENV_MOUNT``, the
        namespace's models at ``models.MODELS_MOUNT``); a ``detached`` process does not die
        with the server."""
        if not (self.layers.get("bwrap") and self.bwrap_path):
            return [], str(plugin_dir)
        _traversable(plugin_dir)
        plan = MountPlan(
            plugin_dir=plugin_dir,
            runtime_paths=runtime_paths([plughost_root()]),
            hidden=self.config.hidden,
            tmp_bytes=self.config.tmp_bytes,
            share_net=share_net or self.share_net_only,
            as_root=os.geteuid() == 0,
            env_dir=env_dir,
            model_binds=tuple(self.models.binds(namespace_id)),
            die_with_parent=not detached,
            egress_dir=egress_dir,
        )
        return bwrap_command(self.bwrap_path, plan), PLUGIN_MOUNT

    def replica_launch(
        self,
        plugin_dir: Path,
        namespace_id: str | None,
        serve_config: Mapping[str, Any],
        env_dir: Path | None = None,
        detached: bool = False,
    ) -> SandboxLaunch | None:
        """The wrapping of one replica (None when the sandbox is off). Leases a uid: give the
        launch back with :meth:`release` once the replica has exited. ``detached``: the
        replica outlives the server (every layer stays; only die-with-parent goes)."""
        if not self.enabled:
            return None
        egress = self.egress_allowed(namespace_id)
        proxy_dir = egress_binding(self, namespace_id, plugin_dir)  # plughost.egress
        uid = self.uids.acquire() if self.uids is not None else None
        prefix, seen_dir = self._prefix(
            plugin_dir, share_net=egress, env_dir=env_dir, detached=detached,
            namespace_id=namespace_id, egress_dir=proxy_dir,
        )
        # inet sockets for the relay to the proxy: that network namespace has only loopback
        egress = egress or (proxy_dir is not None and bool(prefix))
        memory_gb = memory_gb_of(serve_config, self.config.memory_gb)
        lease = self._cgroup_lease(namespace_id, memory_gb)
        policy = self._policy(uid, memory_gb, egress, cgroup=lease is not None)
        env = dict(SANDBOX_ENV) if prefix else {}
        env.update(self.models.env(namespace_id, wrapped=bool(prefix)))
        env.update(egress_env(proxy_dir if prefix else None))
        launch = SandboxLaunch(tuple(prefix), seen_dir, policy.to_json(), env, uid)
        return self._in_cgroup(launch, lease)

    def pool_launch(self, slot: Path, detached: bool) -> SandboxLaunch | None:
        """The wrapping of a replica pool member (plughost.backends.local.pool), before any
        release: bubblewrap with ``slot/plugin`` at the plugin mount and ``slot/models`` at
        the models mount (both empty until a claim fills them), no network, the default
        memory limit, a leased uid (give it back with :meth:`release`). None when this
        machine has no bubblewrap: a member could not be kept from the server's files."""
        if not self.wraps or self.bwrap_path is None:
            return None
        plugin = slot / "plugin"
        plan = MountPlan(
            plugin_dir=plugin,
            runtime_paths=runtime_paths([plughost_root()]),
            hidden=self.config.hidden,
            tmp_bytes=self.config.tmp_bytes,
            share_net=self.share_net_only,
            as_root=os.geteuid() == 0,
            model_binds=tuple(self.models.slot_binds(slot / "models")),
            die_with_parent=not detached,
        )
        prefix = bwrap_command(self.bwrap_path, plan)
        uid = self.uids.acquire() if self.uids is not None else None
        lease = self._cgroup_lease(None, self.config.memory_gb, pool=True, name=slot.name)
        policy = self._policy(uid, self.config.memory_gb, False, cgroup=lease is not None)
        env = dict(SANDBOX_ENV)
        launch = SandboxLaunch(tuple(prefix), PLUGIN_MOUNT, policy.to_json(), env, uid)
        return self._in_cgroup(launch, lease)

    def poolable(
        self, namespace_id: str | None, serve_config: Mapping[str, Any], env_dir: Path | None
    ) -> bool:
        """Whether a replica of this release may be a claimed pool member: it would have
        been wrapped exactly as a member is (no plugin environment, no egress, the default
        memory limit)."""
        return (
            env_dir is None
            and not self.egress_allowed(namespace_id)
            and not egress_listed(self, namespace_id)
            and memory_gb_of(serve_config, self.config.memory_gb) == self.config.memory_gb
        )

    def claim_env(self, namespace_id: str | None) -> dict[str, str]:
        """What a claimed pool member's environment gets from the sandbox (as
        :meth:`replica_launch` gives a replica of the namespace in bubblewrap)."""
        env = dict(SANDBOX_ENV)
        env.update(self.models.env(namespace_id, wrapped=True))
        return env

    def release(self, launch: SandboxLaunch | None) -> None:
        if launch is not None and self.uids is not None:
            self.uids.release(launch.uid)
        self._release_cgroup(launch)
        egress_unbind(self, launch)  # a batch job's egress socket closes with its last worker

    def claim_uid(self, uid: int | None) -> None:
        """Mark the uid of an adopted replica (started by an earlier server) as leased, so no
        new replica shares it; give it back with :meth:`release_uid`."""
        if uid is not None and self.uids is not None:
            self.uids.claim(uid)

    def release_uid(self, uid: int | None) -> None:
        if self.uids is not None:
            self.uids.release(uid)

    def manifest_command(self, script: Path, plugin_root: Path) -> list[str]:
        """The argv that reads a manifest: ``script`` run by the trusted runner, wrapped.

        The hook the intake's manifest reader calls (``IntakeLimits.manifest_command``);
        never with egress, always with the default memory limit.
        """
        uid = self.uids.manifest_uid if self.uids is not None else None
        prefix, seen_dir = self._prefix(plugin_root, share_net=False)
        policy = self._policy(uid, self.config.memory_gb, allow_inet=False)
        runner = [sys.executable, "-I", "-B", "-m", "plughost.sandbox.run_script"]
        return [*prefix, *runner, "--policy", policy.to_json(), str(script), seen_dir]


def _traversable(folder: Path) -> None:
    """Let the sandbox uid list and enter ``folder`` (its files are unpacked world-readable,
    but the folder itself may have been created under a strict umask)."""
    try:
        mode = folder.stat().st_mode
        if mode & 0o005 != 0o005:
            os.chmod(folder, mode | 0o005)
    except OSError as exc:
        log.warning("sandbox: cannot open %s to the sandbox uid: %s", folder, exc)


def memory_gb_of(serve_config: Mapping[str, Any], default: float) -> float:
    """``serve_config.memory_gb`` when it is a positive number, else ``default``."""
    raw = serve_config.get("memory_gb")
    try:
        value = float(raw) if raw is not None and not isinstance(raw, bool) else default
    except (TypeError, ValueError):
        return default
    return value if value > 0 else default


def model_share(config: SandboxConfig) -> ModelShare:
    """What plugin processes see of the models under ``config`` (plughost.sandbox.models)."""
    return ModelShare(config.models_root, config.hf_cache)


def models_of(settings: Settings) -> ModelShare:
    """What plugin processes see of the models, for a launcher without a sandbox."""
    return model_share(config_from_settings(settings))


def config_from_settings(settings: Settings) -> SandboxConfig:
    """The sandbox part of the server settings."""
    hidden = [settings.resolved_home]
    url = settings.resolved_database_url
    if url.startswith("sqlite:///"):
        hidden.append(Path(url.removeprefix("sqlite:///")).resolve().parent)
    return SandboxConfig(
        mode=settings.sandbox,
        bwrap=settings.sandbox_bwrap,
        egress_namespaces=settings.egress_namespaces,
        memory_gb=settings.sandbox_memory_gb,
        max_open_files=settings.sandbox_max_open_files,
        max_processes=settings.sandbox_max_processes,
        max_file_bytes=settings.sandbox_max_file_mb * MIB,
        tmp_bytes=settings.sandbox_tmp_mb * MIB,
        uid_base=settings.sandbox_uid_base,
        uid_count=settings.sandbox_uid_count,
        hidden=tuple(dict.fromkeys(hidden)),
        models_root=settings.models_dir / "ns",
        hf_cache=Path(settings.hf_cache_dir).expanduser().resolve()
        if settings.hf_cache_dir
        else None,
        **cgroup_config(settings),
    )
